"""Selection `all`: every sample gets its own weak-view argmax as pseudo-label (plain self-training)."""

from __future__ import annotations

import torch

from toolkit.api import Batch, Selection, SelectionPlugin


class SelectAll(SelectionPlugin):
    """Every sample, labelled with the trusted argmax on its weak view."""

    def batch_views(self) -> frozenset[str]:
        return frozenset({"strong"})  # the cross-entropy's view; the labels come from the confidence

    def select(self, batch: Batch, confidence: torch.Tensor) -> Selection:
        labels = confidence.argmax(dim=1)
        return Selection(rows=torch.arange(len(batch), device=labels.device), labels=labels)

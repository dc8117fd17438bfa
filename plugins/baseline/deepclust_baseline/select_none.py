"""Selection `none`: no pseudo-label cross-entropy at all (GCC's Stage II trains only through the
generation slot's losses, so the real images get no direct target)."""

from __future__ import annotations

import torch

from toolkit.api import Batch, Selection, SelectionPlugin


class SelectNone(SelectionPlugin):
    """Selects no sample: the self-labeling loss is zero and other slots' losses drive training."""

    def batch_views(self) -> frozenset[str]:
        return frozenset()

    def select(self, batch: Batch, confidence: torch.Tensor) -> Selection:
        empty = torch.zeros(0, dtype=torch.long, device=batch.positions.device)
        return Selection(rows=empty, labels=empty, name="none")

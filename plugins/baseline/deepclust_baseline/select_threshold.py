"""Selection `threshold` (SCAN self-labeling / FixMatch): keep samples whose weak-view confidence
exceeds a fixed threshold; their argmax is the target for the strong view."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from toolkit.api import Batch, Selection, SelectionPlugin


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    threshold: float = Field(0.99, gt=0, le=1, description="minimum confidence of a selected sample")
    normalize: Literal["selected", "batch"] = Field("selected", description="average over selected rows (SCAN) or the batch (FixMatch)")
    class_balance: bool = Field(False, description="weight each selected sample by 1/frequency of its label in the batch (SCAN)")


class ThresholdSelection(SelectionPlugin[Options]):
    """Samples above a global confidence threshold, optionally class-balanced (SCAN self-labeling)."""

    def select(self, batch: Batch, confidence: torch.Tensor) -> Selection:
        o = self.options
        conf, labels = confidence.max(dim=1)
        index = (conf >= o.threshold).nonzero(as_tuple=True)[0]
        chosen = labels[index]
        weights = None
        if o.class_balance and len(index) > 0:
            counts = chosen.bincount(minlength=confidence.shape[1]).float()
            weights = (1.0 / counts[chosen]) * len(index) / (counts > 0).sum()
        return Selection(rows=index, labels=chosen, weights=weights, normalize=o.normalize)

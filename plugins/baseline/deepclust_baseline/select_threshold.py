"""Selection `threshold` (SCAN self-labeling / FixMatch): keep samples whose weak-view confidence
exceeds a fixed threshold; their argmax is the target for the strong view.

`class_balance = "estimated"` is for long-tailed data: SCAN's balance (every selected cluster weighs the
same) pulls a small cluster's boundary into its big neighbours. Instead each selected cluster weighs its
estimated share of the data (the model's own argmax counts over the whole data set at the start of each
epoch, no labels), with no cluster below 1/`max_ratio` of the largest, so a tail cluster that the threshold
starves still trains.
"""

from __future__ import annotations

from typing import Literal, Union

import torch
from pydantic import BaseModel, ConfigDict, Field

from toolkit.api import Batch, EpochState, RunContext, Selection, SelectionPlugin


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    threshold: float = Field(0.99, gt=0, le=1, description="minimum confidence of a selected sample")
    normalize: Literal["selected", "batch"] = Field("selected", description="average over selected rows (SCAN) or the batch (FixMatch)")
    class_balance: Union[bool, Literal["estimated"]] = Field(
        False, description="true: each selected cluster weighs the same in the batch (SCAN); \"estimated\": each "
                           "weighs its estimated share of the data (long tails)")
    max_ratio: float = Field(50.0, ge=1, description="with \"estimated\": no cluster weighs less than the largest / max_ratio")


class ThresholdSelection(SelectionPlugin[Options]):
    """Samples above a global confidence threshold, optionally class-balanced (SCAN self-labeling)."""

    def batch_views(self) -> frozenset[str]:
        return frozenset({"strong"})  # the cross-entropy's view; confidence comes from the calibration slot

    def __init__(self, options: Options | None = None) -> None:
        super().__init__(options)
        self.share: torch.Tensor | None = None  # estimated cluster shares, "estimated" balance only

    def on_epoch_start(self, ctx: RunContext, state: EpochState) -> None:
        if self.options.class_balance != "estimated":
            return
        sizes = state.confidence.argmax(dim=1).bincount(minlength=state.confidence.shape[1]).float()
        floored = sizes.clamp(min=float(sizes.max()) / self.options.max_ratio)
        self.share = (floored / floored.sum()).to(ctx.device)
        metrics = {f"estimated_size_{c}": float(s) for c, s in enumerate(sizes.tolist())}
        metrics["estimated_size_ratio"] = float(sizes.max() / sizes.min().clamp(min=1))
        ctx.log_epoch("self_label", state.epoch, metrics)

    def select(self, batch: Batch, confidence: torch.Tensor) -> Selection:
        o = self.options
        conf, labels = confidence.max(dim=1)
        index = (conf >= o.threshold).nonzero(as_tuple=True)[0]
        chosen = labels[index]
        weights = None
        if o.class_balance and len(index) > 0:
            counts = chosen.bincount(minlength=confidence.shape[1]).float()
            if o.class_balance == "estimated" and self.share is not None:
                target = self.share.to(counts.device)
                present = counts > 0
                weights = target[chosen] / counts[chosen] * len(index) / target[present].sum()
            else:
                weights = (1.0 / counts[chosen]) * len(index) / (counts > 0).sum()
        return Selection(rows=index, labels=chosen, weights=weights, normalize=o.normalize)

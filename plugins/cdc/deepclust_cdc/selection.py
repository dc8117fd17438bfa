"""Selection `cdc_calibrated`: per-class quotas from the calibrated confidence (weak view), CE of the
clustering head on the strong view of the chosen rows."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from deepclust_cdc.quota import quota_select
from toolkit.api import Batch, Selection, SelectionPlugin


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    per_class: int | None = Field(None, ge=1, description="quota cap M; default floor(batch size / clusters)")
    ranking: Literal["class_prob", "argmax"] = Field(
        "class_prob", description="candidates of class c: top-M by p_c over the batch (code) or by confidence among argmax=c (paper)")
    require_argmax: bool = Field(False, description="also drop candidates of class c whose argmax is another class")
    view: Literal["strong", "weak"] = Field("strong", description="view the cross-entropy is computed on")


class CalibratedSelection(SelectionPlugin[Options]):
    """CDC's dynamic per-class selection driven by the calibration plugin's confidence."""

    def batch_views(self) -> frozenset[str]:
        return frozenset({self.options.view})

    def select(self, batch: Batch, confidence: torch.Tensor) -> Selection:
        """Quotas over the whole batch: data-parallel ranks gather every rank's confidence, so M = B / C and the
        top-M candidates are the batch's (as in one process), then each keeps the chosen rows it holds."""
        o = self.options
        probs, own = batch.gather(confidence)
        per_class = o.per_class or max(1, len(probs) // probs.shape[1])
        index, labels = quota_select(probs, per_class, o.ranking, o.require_argmax)
        mine = (index >= own.start) & (index < own.stop)
        # an empty selection is fine: the loop adds a zero loss
        return Selection(rows=index[mine] - own.start, labels=labels[mine], view=o.view)

"""Selection `topk`: the most confident fraction of each cluster in the batch.

A global threshold can starve hard clusters of pseudo-labels (SCAN issue #21); taking a fixed share
of every cluster keeps all of them in training.
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field

from toolkit.api import Batch, Selection, SelectionPlugin


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fraction: float = Field(0.5, gt=0, le=1, description="share of each cluster's batch members to keep")
    min_confidence: float = Field(0.0, ge=0, lt=1, description="never keep samples below this confidence")


class TopKPerCluster(SelectionPlugin[Options]):
    """Keep the top `fraction` of each cluster's samples by trusted confidence."""

    api_version = ">=2.0,<3.0"

    def select(self, batch: Batch, confidence: torch.Tensor) -> Selection:
        o = self.options
        conf, labels = confidence.max(dim=1)
        keep = []
        for cluster in labels.unique():
            members = (labels == cluster).nonzero(as_tuple=True)[0]
            k = max(1, int(round(len(members) * o.fraction)))
            best = members[conf[members].topk(min(k, len(members))).indices]
            keep.append(best[conf[best] >= o.min_confidence])
        rows = torch.cat(keep) if keep else labels.new_zeros(0)
        return Selection(rows=rows, labels=labels[rows])

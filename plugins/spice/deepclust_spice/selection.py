"""Selection `spice_reliable` (SPICE stage 3): cross-entropy on the reliable samples (labels fixed from
the stage-2 head) plus FixMatch consistency (weak-view argmax above eta supervises the strong view).

Defaults follow the released code's reliability rule (self among the Ns neighbours, r >= lambda,
confidence > 0.99, class-balanced); `include_self=false, strict=true, min_confidence=0, balance=false,
ratio=0.95` is the paper's rule (Section III-C, Eqs. 6-7).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from deepclust_spice.reliable import consistency_ratio, neighbours, reliable_mask
from toolkit.api import Batch, EpochState, RunContext, Selection, SelectionPlugin

RELIABLE_SALT = 4


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    num_neighbors: int = Field(100, ge=1, description="N_s")
    ratio: float = Field(0.9, ge=0, le=1, description="lambda: paper 0.95; code 0.99 (CIFAR) / 0.90 (others)")
    strict: bool = Field(False, description="r > lambda (paper) instead of r >= lambda (code)")
    include_self: bool = Field(True, description="the sample is one of its own N_s neighbours (code)")
    min_confidence: float = Field(0.99, ge=0, lt=1, description="also require max prob > this (code 0.99; 0 = off)")
    balance: bool = Field(True, description="cut every cluster's reliable set to the smallest one (code)")
    eta: float = Field(0.95, gt=0, le=1, description="confidence threshold of the consistency term")
    reliable_view: Literal["weak", "strong"] = Field("weak", description="view of the reliable CE (Eq. 9: weak)")
    consistency_on: Literal["all", "unreliable"] = Field("all", description="unlabelled set: every sample "
                                                                            "(paper, code) or only the unreliable")
    consistency_weight: float = Field(1.0, ge=0)
    recompute_every: int = Field(0, ge=0, description="re-derive the reliable set every n epochs (0: fixed, paper)")


class SpiceReliableSelection(SelectionPlugin[Options]):
    """Reliable CE + weak->strong consistency; two Selections named 'reliable' and 'consistency'."""

    def __init__(self, options: BaseModel | None = None) -> None:
        super().__init__(options)
        self.reliable: torch.Tensor | None = None  # [N] stage-2 label of reliable samples, -1 elsewhere

    def on_epoch_start(self, ctx: RunContext, state: EpochState) -> None:
        o = self.options
        epoch = state.epoch
        due = o.recompute_every > 0 and (epoch - 1) % o.recompute_every == 0
        if self.reliable is not None and not due:
            self.reliable = self.reliable.to(ctx.device)
            return
        conf, labels = state.confidence.float().max(dim=1)
        labels_np = labels.cpu().numpy()
        ratio = consistency_ratio(neighbours(state.features.float(), o.num_neighbors, o.include_self),  # GPU kNN for CUDA
                                  labels_np)
        rng = np.random.default_rng(int(ctx.generator(RELIABLE_SALT, epoch).initial_seed()) % 2**32)
        keep = reliable_mask(ratio, conf.cpu().numpy(), labels_np, threshold=o.ratio, strict=o.strict,
                             min_confidence=o.min_confidence, balance=o.balance, rng=rng)
        reliable = torch.full_like(labels, -1)
        reliable[torch.as_tensor(keep, device=labels.device)] = labels[torch.as_tensor(keep, device=labels.device)]
        self.reliable = reliable.to(ctx.device)
        index = torch.as_tensor(np.flatnonzero(keep))
        counts = np.bincount(labels_np[keep], minlength=ctx.num_clusters)
        if (counts == 0).any():
            ctx.warn(f"spice_reliable: {int((counts == 0).sum())} cluster(s) have no reliable sample")
        ctx.log_epoch("self_label", epoch, {"reliable_count": float(keep.sum()),
                                                  "reliable_share": float(keep.mean()),
                                                  "reliable_min_cluster": float(counts.min()),
                                                  "consistency_ratio_mean": float(ratio.mean())})
        ctx.publish_labels("self_label", epoch, "reliable_label", index=index, labels=labels.cpu()[index])
        ctx.publish_labels("self_label", epoch, "all_label", index=torch.arange(len(labels)), labels=labels.cpu())

    def batch_views(self) -> frozenset[str]:
        return frozenset({self.options.reliable_view, "strong"})  # reliable CE, then FixMatch's strong view

    def select(self, batch: Batch, confidence: torch.Tensor) -> list[Selection]:
        o = self.options
        assert self.reliable is not None, "on_epoch_start must run before select"
        target = self.reliable[batch.positions]
        is_reliable = target >= 0
        rel = is_reliable.nonzero(as_tuple=True)[0]
        conf, pseudo = confidence.max(dim=1)
        mask = conf >= o.eta
        if o.consistency_on == "unreliable":
            mask &= ~is_reliable
        con = mask.nonzero(as_tuple=True)[0]
        return [Selection(rows=rel, labels=target[rel], view=o.reliable_view, name="reliable", normalize="selected"),
                Selection(rows=con, labels=pseudo[con], view="strong", name="consistency", normalize="batch",
                          scale=o.consistency_weight)]

    def state_dict(self) -> dict[str, Any]:
        return {} if self.reliable is None else {"reliable": self.reliable.cpu()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "reliable" in state:
            self.reliable = state["reliable"]

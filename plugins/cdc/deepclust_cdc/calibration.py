"""Calibration `cdc_head`: CDC's second head, trained on mini-cluster-averaged predictions of the
clustering head (arXiv:2403.02998 Section 3.2), gives the confidence selection trusts and the final prediction."""

from __future__ import annotations

import copy
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from deepclust_cdc.losses import minicluster_targets, negative_entropy, soft_cross_entropy
from toolkit.api import Batch, CalibrationPlugin, RunContext
from toolkit.ops.kmeans import kmeans


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    num_miniclusters: int = Field(500, ge=1, description="K: k-means mini-clusters per batch (capped at the batch size)")
    w_en: float = Field(1.0, ge=0, description="weight of the negative-entropy balance term L_en")
    entropy_per_class_mean: bool = Field(False, description="L_en divided by C (paper Eq. 3) instead of the code's sum")
    minicluster_norm: Literal["l1", "l2", "none"] = Field("l1", description="feature normalisation before the per-batch k-means")
    kmeans_niter: int = Field(50, ge=1)
    kmeans_nredo: int = Field(10, ge=1, description="k-means restarts per batch (the paper's n_init)")
    stop_gradient: bool = Field(True, description="ablation: False lets L_cal train the backbone too")
    single_head: bool = Field(False, description="ablation 'Single-head (Clu+Cal)': the calibration loss trains the clustering head itself")


class CDCHeadCalibration(CalibrationPlugin[Options]):
    """Dual-head calibration: a copy of the initialised clustering head, trained by L_cal + w_en L_en."""
    separate_prediction = True

    def batch_views(self) -> frozenset[str]:
        return frozenset({"weak"})  # confidence on the weak view; the loss reads the raw view (features_of)

    def setup(self, ctx: RunContext, head: nn.Module, feature_dim: int) -> None:
        o = self.options
        self.head = head
        self.seed = ctx.seed
        self.cal = head if o.single_head else copy.deepcopy(head)

    def modules(self) -> dict[str, nn.Module]:
        o = self.options
        return {} if o.single_head else {"calibration_head": self.cal}

    def confidence(self, batch: Batch) -> torch.Tensor:
        self.cal.train()  # batch statistics in every training pass, as the released code does
        with torch.no_grad():
            return self.cal(batch.features_of("weak")).float().softmax(dim=1)

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        """L_cal + w_en L_en on this step's rows. The mini-cluster targets are computed once per planned batch
        over all of it (every data-parallel rank's rows gathered), as Algorithm 1 does before its B_s steps;
        with stop-gradient the head reads the planned batch's raw features, as the code's stale z_val[J]."""
        o = self.options
        whole = batch.planned
        targets = batch.own_rows(whole.memo("cdc_minicluster_targets", lambda: self._targets(whole)))
        if o.stop_gradient:
            feats = batch.own_rows(whole.features_of("raw"))
        else:
            feats = batch.features_of("raw", grad=True)
        self.cal.train()
        logits = self.cal(feats)
        return {"calibration": soft_cross_entropy(logits, targets),
                "entropy": o.w_en * negative_entropy(logits, o.entropy_per_class_mean)}

    def _targets(self, whole: Batch) -> torch.Tensor:
        """Mini-cluster means of the clustering head's predictions, for the rows of `whole` (Section 3.2)."""
        o = self.options
        feats = whole.features_of("raw", grad=not o.stop_gradient).detach()  # the one forward the loss reuses
        with torch.no_grad():
            p_clu = self.head(feats).float().softmax(dim=1)
            feats_all, own = whole.gather(feats.float())
            p_all, _ = whole.gather(p_clu)
            k = min(o.num_miniclusters, len(feats_all))
            mini = kmeans(_normalise(feats_all, o.minicluster_norm), k, niter=o.kmeans_niter,
                          nredo=o.kmeans_nredo, seed=_batch_seed(self.seed, whole.epoch, whole.step))
            return minicluster_targets(p_all, torch.as_tensor(mini.labels), k)[own]

    def predict(self, features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        o = self.options
        if o.single_head:
            return logits.float().softmax(dim=1)
        was = self.cal.training
        self.cal.eval()
        try:
            with torch.no_grad():
                out = torch.cat([self.cal(f).float() for f in features.split(4096)])
        finally:
            self.cal.train(was)
        return out.softmax(dim=1)


def _normalise(x: torch.Tensor, how: str) -> torch.Tensor:
    if how == "l1":
        return F.normalize(x.float(), p=1, dim=1)
    if how == "l2":
        return F.normalize(x.float(), p=2, dim=1)
    return x.float()


def _batch_seed(seed: int, epoch: int, step: int) -> int:
    """A k-means seed fixed by (run seed, epoch, step), so resumed runs redo the same partitions."""
    return (seed * 1_000_003 + epoch * 10_007 + step) % (2**31 - 1)

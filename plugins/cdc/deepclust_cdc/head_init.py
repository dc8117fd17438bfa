"""Head-init `prototype`: CDC's feature-prototype initialisation of the clustering head
(arXiv:2403.02998 Section 3.1, with the details the released code settles)."""

from __future__ import annotations

from typing import Any, Callable, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from deepclust_cdc.prototypes import group_means, label_means, prototypes, separate
from toolkit.api import HeadInitPlugin, PluginError, RunContext
from toolkit.ops.partition import CANDIDATES, best_partition

STAGE = "head_init"


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    niter: int = Field(100, ge=1, description="k-means iterations")
    nredo: int = Field(10, ge=1, description="k-means restarts (best inertia kept); the paper's n_init")
    orthogonalize: bool = Field(True, description="prototype separation after k-means ('CDC-Init'); off = 'Only K-means'")
    ortho_steps: int = Field(2000, ge=1, description="SGD steps of the separation")
    ortho_scale: float = Field(5.0, gt=0, description="logit scale s of the separation (1 / temperature)")
    ortho_lr: float = Field(0.1, gt=0)
    # Label-free variants of the second (hidden-layer) step; the defaults are the released code's.
    hidden_normalise: Literal["zscore_l2", "l2", "none"] = Field(
        "zscore_l2", description="rows of the hidden activations before the second k-means: per-row z-score "
        "then L2 (as the released code), L2 only, or raw")
    hidden_from: Literal["prototypes", "separated"] = Field(
        "prototypes", description="hidden activations for the second step from the k-means prototypes of "
        "layer 1 (released code: both k-means, then both separations) or from layer 1 after its separation")
    unit_prototypes: bool = Field(
        False, description="L2-normalise each layer's k-means prototypes before the separation, so that "
        "Property 1's argmax = nearest prototype holds (Appendix A.1's proof assumes equal-norm prototypes)")
    last_init: Literal["hidden_kmeans", "feature_kmeans"] = Field(
        "hidden_kmeans", description="final layer: C k-means prototypes of the hidden activations (paper), or "
        "the hidden-space means of the C clusters of a k-means on the row-normalised features (MLP head; the "
        "linear head always takes C k-means prototypes of the features)")
    restart_pick: Literal["inertia", "balanced"] = Field(
        "inertia", description="which of the nredo restarts of the C-way k-means is kept: lowest inertia (code) "
        "or, among those within restart_tolerance of it, the most even cluster sizes (assumes balanced clusters)")
    restart_tolerance: float = Field(0.01, ge=0, description="restart_pick = balanced: relative inertia margin")
    partition: Literal["kmeans", "auto"] = Field(
        "kmeans", description="the C clusters the last layer is built from: the C-way k-means above (paper), or "
        "auto: k-means, spectral clustering and 5C k-means clusters merged by average linkage of the features "
        "compared by silhouette (k-means kept unless another is 0.01 higher; toolkit/ops/partition.py), the last "
        "layer then being the per-cluster means (hidden activations for the MLP head, features for the linear "
        "head); for long-tailed data, where k-means cuts the large classes. Logged as head_init_silhouette_* "
        "and head_init_partition_choice (index in kmeans, spectral-10, spectral-30, merged)")
    kmeans_sample: int | None = Field(
        None, ge=1, description="k-means trains on at most this many points per centroid (faiss's sampling; 256 "
        "is faiss's default); unset: every image, as the released code (at CIFAR-10 size the C-way k-means "
        "would otherwise see 2,560 of 60,000 activations)")
    variant: Literal["conference", "arxiv"] = Field(
        "conference", description="conference (and released code): k-means of row-normalised features, then "
        "of ReLU(BN(h)), row-normalised; arxiv (arXiv:2403.02998 as written): k-means of the raw features, then "
        "of the raw pre-BN hidden layer h = z W1^T, no normalisation (hidden_normalise is then ignored)")


class PrototypeHeadInit(HeadInitPlugin[Options]):
    """k-means prototypes of the features (and of the hidden layer) as head weights, biases zero.

    Works for both head shapes of [model] head_hidden_dim: the MLP (H then C prototypes) and the
    linear head (C prototypes of the features).
    """

    def init_head(self, ctx: RunContext, backbone: nn.Module, features: torch.Tensor,
                  pretrained_head: nn.Module | None) -> nn.Module:
        o = self.options
        feats = features.float()
        head = ctx.build_head(int(feats.shape[1]))
        if not hasattr(head, "first") or not hasattr(head, "last"):
            raise PluginError("head_init prototype: the head has no .first/.last Linear layers to fill")
        hidden = getattr(head, "hidden_dim", None)
        n = len(feats)
        need = hidden or ctx.num_clusters
        if need > n:
            raise PluginError(f"head_init prototype: {need} prototypes need at least as many images, got {n}")
        arxiv = o.variant == "arxiv"
        km = dict(niter=o.niter, nredo=o.nredo, seed=ctx.seed, unit=o.unit_prototypes, sample=o.kmeans_sample,
                  normalise="none" if arxiv else "zscore_l2")
        km_c = dict(km, pick=o.restart_pick, tolerance=o.restart_tolerance)  # the C-way k-means only
        hidden_norm = "none" if arxiv else o.hidden_normalise
        sep = dict(steps=o.ortho_steps if o.orthogonalize else 0, scale=o.ortho_scale, lr=o.ortho_lr)
        phases = _Phases(ctx, feats.device)
        chosen = phases.run("partition", lambda: self._partition(ctx, feats)) if o.partition == "auto" else None
        if chosen is not None and int(chosen.numel()) == 0:
            chosen = None  # k-means won: the paper's path below, unchanged
        with torch.no_grad():
            if hidden is None and chosen is not None:
                w_last = label_means(feats, chosen, ctx.num_clusters, normalise="none" if arxiv else "zscore_l2",
                                     unit=o.unit_prototypes)
                w_first = None
            elif hidden is None:
                w_last = phases.run("kmeans_last", lambda: prototypes(feats, ctx.num_clusters, **km_c))
                w_first = None
            else:
                w_first = phases.run("kmeans_first", lambda: prototypes(feats, hidden, **km))
                if o.hidden_from == "separated":
                    w_first = phases.separate("first", w_first, sep)
                # A fresh BN in eval mode is the identity (up to sqrt(1 + eps)), so ReLU(BN(h)) = ReLU(h).
                activ = feats @ w_first.t() if arxiv else torch.relu(feats @ w_first.t())
                last = dict(km_c, normalise=hidden_norm)
                if chosen is not None:
                    w_last = label_means(activ, chosen, ctx.num_clusters, normalise=hidden_norm,
                                         unit=o.unit_prototypes)
                elif o.last_init == "feature_kmeans":
                    w_last = phases.run("kmeans_last", lambda: group_means(activ, feats, ctx.num_clusters, **last))
                else:
                    w_last = phases.run("kmeans_last", lambda: prototypes(activ, ctx.num_clusters, **last))
        if w_first is not None:
            _fill(head.first, w_first if o.hidden_from == "separated" else phases.separate("first", w_first, sep))
        _fill(head.last, phases.separate("last", w_last, sep))
        return head

    def _partition(self, ctx: RunContext, feats: torch.Tensor) -> torch.Tensor:
        """The labels of the partition `auto` picks, or an empty tensor when k-means is picked."""
        name, labels, scores = best_partition(feats, ctx.num_clusters, ctx.seed, niter=self.options.niter,
                                              spherical=True)
        ctx.log_epoch(STAGE, 0, {**{f"silhouette_{n.replace('-', '')}": v for n, v in scores.items()},
                                 "partition_choice": float(list(CANDIDATES).index(name))})
        return torch.empty(0, dtype=torch.long) if name == "kmeans" else torch.as_tensor(labels, dtype=torch.long)


class _Phases:
    """The stage's expensive phases (k-means per layer, then separation per layer), each computed once:
    `--resume` after a kill reuses finished phases and continues a separation from its last kept step."""

    def __init__(self, ctx: RunContext, device: torch.device) -> None:
        self.ctx = ctx
        point = ctx.resume_point(STAGE) or {}
        self.done: dict[str, torch.Tensor] = {k: v.to(device) for k, v in point.get("done", {}).items()}
        self.partial: dict[str, Any] | None = point.get("separation")
        if point:
            at = f", separation of '{self.partial['layer']}' at step {self.partial['step']}" if self.partial else ""
            ctx.warn(f"head_init (prototype): resuming after {', '.join(self.done) or 'nothing'}{at}")

    def run(self, name: str, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        """`compute()` unless an earlier attempt finished it; a finished phase is always kept (minutes of k-means)."""
        if name not in self.done:
            self.done[name] = compute()
            self.ctx.save_point(STAGE, len(self.done), {"done": self.done}, final=True)
        return self.done[name]

    def separate(self, layer: str, weights: torch.Tensor, options: dict[str, Any]) -> torch.Tensor:
        """`separate(weights)` for one layer, with its steps kept at most every TOOLKIT_STAGE_CHECKPOINT_SECONDS."""
        resume = self.partial if self.partial is not None and self.partial["layer"] == layer else None

        def keep(state: dict[str, Any]) -> None:
            self.ctx.save_point(STAGE, len(self.done), {"done": self.done, "separation": {"layer": layer, **state}})

        return self.run(f"separate_{layer}", lambda: separate(weights, **options, resume=resume, checkpoint=keep))


def _fill(layer: nn.Linear, weight: torch.Tensor) -> None:
    with torch.no_grad():
        layer.weight.copy_(weight.to(layer.weight.device))
        if layer.bias is not None:
            layer.bias.zero_()

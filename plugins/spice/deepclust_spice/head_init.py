"""Head-init `spice_prototype` (SPICE stage 2, SPICE-self): several clustering heads trained on the
frozen backbone by prototype pseudo-labeling; the head with the lowest label-free loss is kept."""

from __future__ import annotations

import copy
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from deepclust_spice.prototype import double_softmax_ce, entropy_penalty, head_score, prototype_labels
from toolkit.api import Checkpointed, HeadInitPlugin, RunContext

HEAD_INIT_SALT = 2
CACHE_SALT = 7  # the cached views' draws, apart from the epochs' own
STAGE = "head_init"


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    heads: int = Field(10, ge=1, description="heads trained at once; the lowest-loss one is kept")
    epochs: int = Field(100, ge=0)
    lr: float = Field(0.005, gt=0, description="Adam, constant (paper)")
    batch_size: int = Field(5000, ge=2, description="E-step batch M (paper 1000, released code 5000-10000)")
    sub_batch_size: int = Field(128, ge=2, description="M-step sub-batches over the labelled pairs (code)")
    num_repeat: int = Field(8, ge=1, description="M-step passes per E-batch (code: 8; Algorithm 1: 1)")
    center_ratio: float = Field(0.5, gt=0, le=1, description="share of M/K top-confident rows forming a prototype "
                                                             "(code 0.5, paper 1.0)")
    overlap: bool = Field(True, description="a sample may be labelled by several prototypes (paper default)")
    entropy_weight: float = Field(0.0, ge=0, description="weight of the mean-prediction entropy term (Tiny-ImageNet)")
    weak_view: Literal["raw", "weak", "strong"] = Field("weak", description="view giving the E-step probabilities")
    strong_view: Literal["raw", "weak", "strong"] = Field("strong", description="view the heads are trained on")
    encode_batch_size: int = Field(512, ge=1, description="backbone chunk size (memory only)")
    cached_views: int = Field(
        0, ge=0, description="> 0: encode this many augmented copies of every image's weak and strong views once "
                             "and cycle through them (weak by epoch, strong by epoch and repeat) instead of encoding "
                             "every E-batch num_repeat + 1 times per epoch (finite augmentation; the backbone is "
                             "frozen here)")


def _encode(backbone: nn.Module, ctx: RunContext, view: str, index: torch.Tensor, gen: torch.Generator,
            chunk: int) -> torch.Tensor:
    """Features of one view of `index`, frozen backbone, in chunks."""
    with torch.no_grad():
        return torch.cat([backbone(ctx.view(view, part, gen)).float() for part in index.split(chunk)])


class CachedViews:
    """`copies` encodings of each view of every image, made once ([copies, N, D] per view); draw d of a view
    reads copy d mod copies. The raw view has one copy (it has no randomness)."""

    def __init__(self, ctx: RunContext, backbone: nn.Module, views: set[str], copies: int, chunk: int) -> None:
        self.store = {view: ctx.encode_copies(backbone, view, 1 if view == "raw" else copies, HEAD_INIT_SALT,
                                              CACHE_SALT, i, batch_size=chunk)
                      for i, view in enumerate(sorted(views))}

    def get(self, view: str, draw: int, index: torch.Tensor) -> torch.Tensor:
        copies = self.store[view]
        return copies[draw % len(copies)][index.to(copies.device)]


class Best:
    """The kept head so far (lowest label-free loss over epochs and heads) and the last epoch's labels,
    saved with the resume points."""

    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        self.loss, self.state = float("inf"), state
        self.labels: tuple[torch.Tensor, torch.Tensor] | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"loss": self.loss, "state": self.state, "labels": self.labels}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        self.loss, self.state = float(saved["loss"]), saved["state"]
        self.labels = tuple(saved["labels"]) if saved["labels"] is not None else None  # type: ignore[assignment]


class SpicePrototypeHeadInit(HeadInitPlugin[Options]):
    """Trains `heads` heads with the backbone frozen (eval mode); keeps the (epoch, head) of lowest loss."""

    def init_head(self, ctx: RunContext, backbone: nn.Module, features: torch.Tensor,
                  pretrained_head: nn.Module | None) -> nn.Module:
        o = self.options
        k, dim = ctx.num_clusters, int(features.shape[1])
        embed = F.normalize(features.float(), dim=1)  # top branch: raw view, L2-normalised
        with ctx.seeded():
            heads = nn.ModuleList([ctx.build_head(dim) for _ in range(o.heads)]).to(ctx.device)
        optimizer = torch.optim.Adam(heads.parameters(), lr=o.lr)
        backbone.eval()  # truly frozen, BN statistics included (the released code lets them drift)
        best = Best(copy.deepcopy(heads[0].state_dict()))
        loop = ctx.epoch_loop(STAGE, o.epochs, Checkpointed(heads=heads, optimizer=optimizer, best=best),
                              salt=(HEAD_INIT_SALT,), plugin="spice_prototype")
        if loop.resumed_from is not None and loop.resumed_from >= o.epochs and best.labels is not None:
            # finished before the kill: report its last labels again (the summary's latest)
            ctx.publish_labels(STAGE, loop.resumed_from, "prototype_label", *best.labels)
        cache = (CachedViews(ctx, backbone, {o.weak_view, o.strong_view}, o.cached_views, o.encode_batch_size)
                 if o.cached_views and o.epochs > 0 else None)
        for epoch in loop:
            gen = epoch.generator
            train_loss, steps, pairs = 0.0, 0, 0
            draw = epoch.number - 1  # which cached copy this epoch reads (resumes land on the same one)
            for index in ctx.batches(gen, o.batch_size):
                per_cluster = len(index) // k
                if per_cluster < 1:
                    continue
                rows = index.to(ctx.device)
                weak = (cache.get(o.weak_view, draw, index) if cache is not None
                        else _encode(backbone, ctx, o.weak_view, index, gen, o.encode_batch_size))
                with torch.no_grad():
                    heads.eval()
                    chosen = [prototype_labels(embed[rows], h(weak).softmax(dim=1), per_cluster, o.center_ratio,
                                               o.overlap) for h in heads]
                    heads.train()
                pairs += len(chosen[0][0])
                for repeat in range(o.num_repeat):
                    strong = (cache.get(o.strong_view, draw * o.num_repeat + repeat, index) if cache is not None
                              else _encode(backbone, ctx, o.strong_view, index, gen, o.encode_batch_size))
                    orders = [torch.randperm(len(i), generator=gen).to(ctx.device) for i, _ in chosen]
                    for start in range(0, len(orders[0]), o.sub_batch_size):
                        parts = [order[start:start + o.sub_batch_size] for order in orders]
                        if len(parts[0]) < 2:
                            continue
                        losses = []
                        for h, (idx, lab), part in zip(heads, chosen, parts):
                            logits = h(strong[idx[part]])
                            loss = double_softmax_ce(logits, lab[part])
                            if o.entropy_weight:
                                loss = loss + o.entropy_weight * entropy_penalty(logits)
                            losses.append(loss)
                        loss = torch.stack(losses).mean()
                        optimizer.zero_grad(set_to_none=True)
                        loss.backward()
                        optimizer.step()
                        train_loss, steps = train_loss + float(loss.detach()), steps + 1
            scores = self._score(heads, features, embed, o)
            h_best = min(range(len(scores)), key=lambda h: scores[h][0])
            loss_best, idx_best, lab_best = scores[h_best]
            if loss_best < best.loss:
                best.loss, best.state = loss_best, copy.deepcopy(heads[h_best].state_dict())
            best.labels = (idx_best.cpu(), lab_best.cpu())
            epoch.report({
                "loss": train_loss / max(steps, 1),
                "prototype_labels": float(pairs),  # labelled (sample, cluster) pairs per head this epoch
                "head_loss_min": loss_best,
                "head_loss_mean": sum(s[0] for s in scores) / len(scores),
                "best_head": float(h_best),
                "kept_loss": best.loss,
            })
            ctx.publish_labels(STAGE, epoch.number, "prototype_label", index=idx_best, labels=lab_best)
        with ctx.seeded():
            head = ctx.build_head(dim)
        if o.epochs > 0:
            head.load_state_dict(best.state)
        return head.to(ctx.device)

    @staticmethod
    @torch.no_grad()
    def _score(heads: nn.ModuleList, features: torch.Tensor, embed: torch.Tensor,
               o: Options) -> list[tuple[float, torch.Tensor, torch.Tensor]]:
        """Every head's whole-data-set loss (M = N, Section III-B) on un-augmented images, in eval mode."""
        heads.eval()
        try:
            return [head_score(h(features.float()), embed, o.center_ratio, o.overlap) for h in heads]
        finally:
            heads.train()

"""Pretrain `drc`: backbone + K-way head (+ auxiliary over-clustering head) trained end to end with DRC.

Each epoch trains the heads in turn over the whole data set (auxiliary first, as PICA does), with one
Adam optimiser shared by backbone and heads. A batch of B images gives an "original" view (once) and
R independent augmented views; the original logits are tiled R times so N = R*B pairs enter each loss.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from deepclust_drc.loss import drc_loss
from toolkit.api import Checkpointed, PretrainPlugin, PretrainResult, RunContext, autocast

DRC_SALT = 5


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    epochs: int = Field(500, ge=0)
    batch_size: int = Field(256, ge=2, description="distinct images per step (B)")
    repeats: int = Field(2, ge=1, description="augmented views per image; N = repeats * B pairs per loss")
    pairing: Literal["pica_repeat", "two_views"] = Field(
        "pica_repeat", description="pica_repeat: original view tiled against `repeats` augmentations; "
                                   "two_views: two augmented views per image (SimCLR reading, N = B)")
    original_view: Literal["raw", "weak", "strong"] = "weak"
    augmented_view: Literal["raw", "weak", "strong"] = "strong"
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    t_af: float = Field(0.5, gt=0, description="temperature of the assignment-feature (row) loss")
    t_ap: float = Field(0.95, gt=0, description="temperature of the assignment-probability (column) loss")
    af_weight: float = Field(1.0, ge=0)
    ap_weight: float = Field(1.0, ge=0)
    cr_weight: float = Field(0.005, ge=0, description="lambda of the cluster-size regulariser")
    af_normalize: bool = Field(True, description="cosine instead of raw dot products in L_AF")
    ap_normalize: bool = Field(True, description="cosine over cluster columns in L_AP")
    af_mask_repeats: bool = Field(False, description="drop other views of the same image from L_AF's negatives")
    symmetric: bool = Field(False, description="average both anchor directions (the paper has one)")
    aux_head: bool = Field(True, description="train an auxiliary over-clustering head (discarded afterwards)")
    aux_clusters: int | None = Field(None, ge=2, description="its size; default max(70, 3.5 K)")
    concat_forward: bool = Field(False, description="one forward for both views (faster; BN stats shared)")
    grad_clip: float | None = Field(None, gt=0)


def aux_size(option: int | None, k: int) -> int:
    """PICA/DCDC's over-clustering sizes: 70 for K <= 20, 700 for K = 200."""
    return option if option is not None else max(70, int(round(3.5 * k)))


class DRCPretrain(PretrainPlugin[Options]):
    """DRC (one-stage): L_AF + L_AP + lambda L_CR on the head's logits; returns backbone and head."""
    makes_head = True

    def pretrain(self, ctx: RunContext, backbone: nn.Module) -> PretrainResult:
        o = self.options
        dim = int(backbone.out_dim)
        with ctx.seeded(DRC_SALT):
            head = ctx.build_head(dim).to(ctx.device)
            heads: dict[str, nn.Module] = {}
            if o.aux_head:  # trained first in each epoch, as PICA does
                heads["aux"] = nn.Linear(dim, aux_size(o.aux_clusters, ctx.num_clusters)).to(ctx.device)
            heads["main"] = head
        params = [p for m in [backbone, *heads.values()] for p in m.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
        self.batch_size = min(o.batch_size, len(ctx.data))  # a recipe pointed at a smaller data set still runs
        if self.batch_size < o.batch_size:
            ctx.warn(f"pretrain (drc): batch_size {o.batch_size} is more than the {len(ctx.data)} images; "
                     f"using {self.batch_size}")
        state = Checkpointed(backbone=backbone, heads=nn.ModuleDict(heads), optimizer=opt)
        loop = ctx.epoch_loop("pretrain", o.epochs, state, salt=(DRC_SALT,), plugin="drc")
        for epoch in loop:
            for h, (name, module) in enumerate(heads.items()):
                part = self._pass(ctx, backbone, module, opt, params, epoch.generator_for(h))
                prefix = "" if name == "main" else "aux_"
                epoch.report({f"{prefix}{k}": v for k, v in part.items()})
        backbone.eval()
        head.eval()
        return PretrainResult(backbone, head=head, metrics=loop.metrics)

    def restart_score(self, ctx: RunContext, result: PretrainResult) -> float | None:
        """Restarts keep the lowest final L_AP (the last epoch's mean): the most confident, least ambiguous
        assignment the contrastive objective reached, judged without labels."""
        ap = result.metrics.get("ap")
        return None if ap is None else -float(ap)

    def _views(self, ctx: RunContext, images: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(original batch [B], augmented batch [R*B] ordered [all images, all images, ...])."""
        o = self.options
        aug = ctx.views.get(o.augmented_view)
        if o.pairing == "two_views":
            return aug(images, gen), aug(images, gen)
        original = ctx.views.get(o.original_view)(images, gen)
        return original, aug(images.repeat(o.repeats, 1, 1, 1), gen)

    def _pass(self, ctx: RunContext, backbone: nn.Module, head: nn.Module, opt: torch.optim.Optimizer,
              params: list[torch.Tensor], gen: torch.Generator) -> dict[str, float]:
        """One pass over the data set training `head` (and the backbone); returns mean losses + balance."""
        o = self.options
        backbone.train()
        head.train()
        sums = torch.zeros(5, device=ctx.device)
        steps = 0
        for index in ctx.batches(gen, self.batch_size, drop_last=True):
            xo, xp = self._views(ctx, ctx.images(index), gen)
            with autocast(ctx.device):
                if o.concat_forward:
                    zo, zp = head(backbone(torch.cat([xo, xp]))).float().split([len(xo), len(xp)])
                else:
                    zo, zp = head(backbone(xo)).float(), head(backbone(xp)).float()
            tile = len(zp) // len(zo)
            z = zo.repeat(tile, 1)
            group = torch.arange(len(zo), device=z.device).repeat(tile) if o.af_mask_repeats else None
            loss, parts = drc_loss(z, zp, t_af=o.t_af, t_ap=o.t_ap, cr_weight=o.cr_weight, af_weight=o.af_weight,
                                   ap_weight=o.ap_weight, af_normalize=o.af_normalize, ap_normalize=o.ap_normalize,
                                   symmetric=o.symmetric, group=group)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if o.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, o.grad_clip)
            opt.step()
            with torch.no_grad():
                used = torch.bincount(zo.argmax(1), minlength=zo.shape[1]).gt(0).float().mean()
                sums += torch.stack([loss.detach(), parts["af"].detach(), parts["ap"].detach(),
                                     parts["cr"].detach() / len(z), used])
            steps += 1
        names = ("loss", "af", "ap", "balance", "clusters_used")
        return {n: float(v) / max(steps, 1) for n, v in zip(names, sums.tolist())}

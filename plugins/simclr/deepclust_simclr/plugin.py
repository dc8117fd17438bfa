"""Pretrain `simclr`: backbone + projection MLP trained with NT-Xent on two augmented views."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from deepclust_simclr.loss import nt_xent
from toolkit.api import Checkpointed, PretrainPlugin, PretrainResult, RunContext, autocast
from toolkit.data.views import AugmentConfig

PRETRAIN_SALT = 1


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    epochs: int = Field(100, ge=0)
    batch_size: int = Field(512, ge=4)
    lr: float = Field(1e-3, gt=0)
    optimizer: Literal["adam", "sgd"] = "adam"
    weight_decay: float = Field(1e-6, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    temperature: float = Field(0.5, gt=0)
    projection_dim: int = Field(128, ge=2)
    projection_hidden: int = Field(512, ge=2)
    view: Literal["weak", "strong"] = Field("strong", description="which [views.*] augmentation makes the pairs")
    augment: AugmentConfig | None = Field(None, description="[pretrain.augment]: the pairs' own augmentation, "
                                          "instead of the `view` one (a pretext may want stronger pairs than "
                                          "the self-labeling stage's strong view)")
    cosine_schedule: bool = Field(True, description="cosine learning-rate decay over the epochs")
    colour: Literal["off", "auto"] = Field(
        "off", description="auto: on colour images, the pairs also get colour jitter and random greyscale (where "
                           "their augmentation has none), so the features cannot cluster by colour")


#: What `colour = "auto"` adds to the pairs of colour images (SimCLR's strengths; measured in RESULTS.md).
COLOUR_PAIRS = {"brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.1, "jitter_p": 0.8, "grayscale": 0.2}


def pair_augment(o: Options, base: AugmentConfig | None, channels: int) -> AugmentConfig | None:
    """The pairs' augmentation: `base`, plus colour invariance on colour data when asked for."""
    if o.colour != "auto" or channels != 3:
        return base
    cfg = base or AugmentConfig()
    jitter = ("brightness", "contrast", "saturation", "hue")
    added = {k: v for k, v in COLOUR_PAIRS.items() if k != "jitter_p" and not getattr(cfg, k)}
    if not any(getattr(cfg, k) for k in jitter):  # no jitter of its own: SimCLR's probability too
        added["jitter_p"] = COLOUR_PAIRS["jitter_p"]
    return cfg.model_copy(update=added)


def projection_head(in_dim: int, hidden: int, out: int) -> nn.Module:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out))


class SimCLRPretrain(PretrainPlugin[Options]):
    """SimCLR: two augmented views per image, NT-Xent on a projection head (dropped afterwards)."""

    def pretrain(self, ctx: RunContext, backbone: nn.Module) -> PretrainResult:
        o = self.options
        with ctx.seeded():
            proj = projection_head(int(backbone.out_dim), o.projection_hidden, o.projection_dim).to(ctx.device)
        params = list(backbone.parameters()) + list(proj.parameters())
        if o.optimizer == "sgd":
            opt: torch.optim.Optimizer = torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
        else:
            opt = torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(o.epochs, 1)) if o.cosine_schedule else None
        base = o.augment if o.augment is not None else ctx.views.get(o.view).cfg
        augment = pair_augment(o, base, ctx.data.channels)
        view = ctx.views.custom(augment) if augment is not base or o.augment is not None else ctx.views.get(o.view)
        backbone.train()
        proj.train()
        state = Checkpointed(backbone=backbone, projection=proj, optimizer=opt, scheduler=sched)
        loop = ctx.epoch_loop("pretrain", o.epochs, state, salt=(PRETRAIN_SALT,), plugin="simclr")
        for epoch in loop:
            total = torch.zeros((), device=ctx.device)
            steps = 0
            for index in ctx.batches(epoch.generator, o.batch_size, drop_last=True):
                images = ctx.images(index)
                with autocast(ctx.device):
                    z = proj(backbone(torch.cat([view(images, epoch.generator), view(images, epoch.generator)])))
                z1, z2 = z.float().chunk(2)
                loss = nt_xent(z1, z2, o.temperature)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.detach()
                steps += 1
            if sched:
                sched.step()
            epoch.report(loss=float(total) / max(steps, 1))
        return PretrainResult(backbone, metrics={"loss": loop.metrics.get("loss", float("nan"))})

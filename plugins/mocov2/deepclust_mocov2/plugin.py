"""Pretrain `mocov2`: query encoder + projector trained against a momentum (EMA) key encoder and a queue.

Settings default to CDC's (arXiv:2403.02998 Appendix B.1, and its released pretraining config): SGD lr
0.5 x batch/256, weight decay 1e-4, 50-epoch warmup then cosine, temperature 0.2, queue 32768, tau 0.99
(optionally cosine-increased to 0.999 as solo-learn's MoCo V2+), projector Linear-(BN)-ReLU-Linear
4096 -> 256, symmetric loss (MoCo V2+).
The projector, momentum encoder and queue are thrown away afterwards.
"""

from __future__ import annotations

import copy
import math
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from deepclust_mocov2.loss import KeyQueue, moco_infonce
from toolkit.api import Checkpointed, PretrainPlugin, PretrainResult, RunContext, autocast
from toolkit.data.views import AugmentConfig

PRETRAIN_SALT = 1
SHUFFLE_SALT = 2


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    epochs: int = Field(1000, ge=0)
    batch_size: int = Field(256, ge=4)
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = Field(0.5, gt=0, description="base lr, scaled by batch_size / 256")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum (standard MoCo-v2; the CDC release ends up at 0)")
    weight_decay: float = Field(1e-4, ge=0)
    warmup_epochs: int = Field(50, ge=0)
    temperature: float = Field(0.2, gt=0)
    queue_size: int = Field(32768, ge=1)
    tau: float = Field(0.99, ge=0, le=1, description="momentum of the key encoder")
    final_tau: float | None = Field(None, ge=0, le=1, description="cosine-increase tau to this (solo-learn: 0.999)")
    projection_hidden: int = Field(4096, ge=2)
    projection_dim: int = Field(256, ge=2)
    projector_bn: bool = Field(True, description="BN in the projector (paper yes, released config no)")
    symmetric: bool = Field(True, description="MoCo V2+: both views act as query and key")
    batch_norm: Literal["joint", "per_view", "shuffle"] = Field(
        "joint", description="BatchNorm batches of the two views: joint (one batch of 2B), per_view (each view "
        "its own forward: solo-learn's MoCo V2+, CDC's pretraining), shuffle (MoCo's shuffle-BN on one device: "
        "each view in bn_groups groups normalised on their own, the key batch permuted across the groups so "
        "a query and its positive key never share statistics; SPICE's 4-GPU MoCo)")
    bn_groups: int = Field(4, ge=2, description="batch_norm = shuffle: simulated devices (SPICE: 4 GPUs x 32)")
    view: Literal["weak", "strong"] = Field("strong", description="which [views.*] augmentation makes the pairs")
    augment: AugmentConfig | None = Field(None, description="[pretrain.augment]: the pairs' own augmentation, "
                                          "instead of the `view` one (a pretext may want stronger pairs than "
                                          "the self-labeling stage's strong view)")


def projector(in_dim: int, hidden: int, out: int, bn: bool) -> nn.Module:
    mid: list[nn.Module] = [nn.BatchNorm1d(hidden)] if bn else []
    return nn.Sequential(nn.Linear(in_dim, hidden), *mid, nn.ReLU(inplace=True), nn.Linear(hidden, out))


def lr_at(o: Options, step: int, total: int, steps_per_epoch: int) -> float:
    """Linear warmup for `warmup_epochs`, then cosine decay to 0 (per step)."""
    base = o.lr * o.batch_size / 256
    warm = o.warmup_epochs * steps_per_epoch
    if step < warm:
        return base * (step + 1) / warm
    progress = (step - warm) / max(total - warm, 1)
    return base * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def encode_pair(net: nn.Module, x1: torch.Tensor, x2: torch.Tensor, mode: str, groups: int,
                shuffle: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Both views through `net`, BatchNorm statistics as `mode` says (see Options.batch_norm). With `shuffle`
    (the key encoder under shuffle-BN) each view's rows are permuted before the groups and put back after."""
    if mode == "joint":
        z1, z2 = net(torch.cat([x1, x2])).chunk(2)
        return z1, z2
    if mode == "per_view":
        return net(x1), net(x2)
    outs = []
    for x in (x1, x2):
        order = torch.randperm(len(x), generator=shuffle).to(x.device) if shuffle is not None else None
        rows = x[order] if order is not None else x
        z = torch.cat([net(part) for part in rows.chunk(groups)])
        if order is not None:
            z = torch.empty_like(z).index_copy_(0, order, z)  # row order[i] of the batch is z[i]
        outs.append(z)
    return outs[0], outs[1]


@torch.no_grad()
def ema_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    for t, s in zip(target.parameters(), source.parameters()):
        t.mul_(tau).add_(s.detach(), alpha=1 - tau)


class MoCoV2Pretrain(PretrainPlugin[Options]):
    """MoCo-v2: InfoNCE of query projections against momentum-encoder keys and a queue of old keys."""

    def pretrain(self, ctx: RunContext, backbone: nn.Module) -> PretrainResult:
        o = self.options
        with ctx.seeded():
            query = nn.Sequential(backbone, projector(int(backbone.out_dim), o.projection_hidden, o.projection_dim,
                                                      o.projector_bn)).to(ctx.device)
        key = copy.deepcopy(query)
        for p in key.parameters():
            p.requires_grad_(False)
        queue = KeyQueue(o.queue_size, o.projection_dim, ctx.device, ctx.generator(PRETRAIN_SALT, 0))
        params = list(query.parameters())
        if o.optimizer == "sgd":
            opt: torch.optim.Optimizer = torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
        else:
            opt = torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
        view = ctx.views.custom(o.augment) if o.augment is not None else ctx.views.get(o.view)
        steps_per_epoch = max(len(ctx.data) // o.batch_size, 1)  # exact: batches drop the last partial one
        total = steps_per_epoch * o.epochs
        query.train()
        key.train()
        state = Checkpointed(query=query, key=key, optimizer=opt, queue=queue)
        loop = ctx.epoch_loop("pretrain", o.epochs, state, salt=(PRETRAIN_SALT,), plugin="mocov2")
        step = (loop.resumed_from or 0) * steps_per_epoch
        for epoch in loop:
            gen = epoch.generator
            shuffle = epoch.generator_for(SHUFFLE_SALT) if o.batch_norm == "shuffle" else None
            running = torch.zeros((), device=ctx.device)
            count = 0
            for index in ctx.batches(gen, o.batch_size, drop_last=True):
                images = ctx.images(index)
                x1, x2 = view(images, gen), view(images, gen)
                for group in opt.param_groups:
                    group["lr"] = lr_at(o, step, total, steps_per_epoch)
                with autocast(ctx.device):
                    q1, q2 = (z.float() for z in encode_pair(query, x1, x2, o.batch_norm, o.bn_groups))
                    with torch.no_grad():
                        k1, k2 = (z.float() for z in encode_pair(key, x1, x2, o.batch_norm, o.bn_groups, shuffle))
                loss = moco_infonce(q1, k2, queue.keys, o.temperature)
                if o.symmetric:
                    loss = (loss + moco_infonce(q2, k1, queue.keys, o.temperature)) / 2
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                tau = o.tau if o.final_tau is None else o.final_tau - (o.final_tau - o.tau) * (math.cos(math.pi * step / max(total, 1)) + 1) / 2
                ema_update(key, query, tau)
                queue.push(torch.cat([k2, k1]) if o.symmetric else k2)
                running += loss.detach()
                count += 1
                step += 1
            epoch.report(loss=float(running) / max(count, 1))
        return PretrainResult(backbone, metrics={"loss": loop.metrics.get("loss", float("nan"))})

"""`[train] cached_views = M` with `freeze_backbone = true`: the self-labeling stage on cached features.

A frozen backbone maps each augmented view to the same features every time it sees it, so instead of a forward
per step the run encodes M augmented copies of every image's weak and strong views once (and its raw view, for
the per-epoch evaluation), then trains and evaluates the head on them, copy (epoch - 1) mod M in epoch `epoch`.
This is how heads on frozen foundation-model features train in minutes (TEMI, TURTLE); the price is a finite
set of augmentations. The copies go through `RunContext.encode_copies`, so the feature cache keeps them for later
runs and search trials of the same backbone, views and data.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from toolkit.api.context import RunContext
from toolkit.api.precision import autocast
from toolkit.data.views import BatchView

FROZEN_SALT = 11


@dataclass
class FrozenFeatures:
    """Encoded views of a frozen backbone: weak and strong [M, N, D], raw [N, D] (and the eval set's raw)."""

    weak: torch.Tensor
    strong: torch.Tensor
    train_raw: torch.Tensor
    eval_raw: torch.Tensor | None

    @classmethod
    def encode(cls, ctx: RunContext, backbone: nn.Module, copies: int,
               eval_images: torch.Tensor | None = None) -> "FrozenFeatures":
        weak = ctx.encode_copies(backbone, "weak", copies, FROZEN_SALT, 1)
        strong = ctx.encode_copies(backbone, "strong", copies, FROZEN_SALT, 2)
        raw = ctx.encode_copies(backbone, "raw", 1, FROZEN_SALT, 0)[0]
        other = None if eval_images is None else encode_images(eval_images, ctx.views.raw, backbone, ctx.device)
        return cls(weak, strong, raw, other)

    def views(self, epoch: int, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(weak, strong) features of the images at `index` in self-labeling epoch `epoch` (1-based)."""
        copy = (epoch - 1) % len(self.weak)
        return self.weak[copy][index.to(self.weak.device)], self.strong[copy][index.to(self.strong.device)]


    def raw_of(self, index: torch.Tensor) -> torch.Tensor:
        """Raw-view features of the training images at `index` (the same every epoch)."""
        return self.train_raw[index.to(self.train_raw.device)]


@torch.no_grad()
def encode_images(images: torch.Tensor, view: BatchView, backbone: nn.Module, device: torch.device,
                  batch_size: int = 1024) -> torch.Tensor:
    """Eval-mode features of `view` of `images` (another set than the training one), in batches."""
    was_training = backbone.training
    backbone.eval()
    try:
        out = []
        for start in range(0, len(images), batch_size):
            with autocast(device):
                out.append(backbone(view(images[start:start + batch_size].to(device))).float())
    finally:
        backbone.train(was_training)
    return torch.cat(out)

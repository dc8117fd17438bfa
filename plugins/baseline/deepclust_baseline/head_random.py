"""Head-init `random`: PyTorch's default initialisation of the clustering head."""

from __future__ import annotations

import torch
from torch import nn

from toolkit.api import HeadInitPlugin, RunContext


class RandomHeadInit(HeadInitPlugin):
    """Randomly initialised clustering head (seeded from the run seed); or the pretrain plugin's head if it made one."""

    def init_head(self, ctx: RunContext, backbone: nn.Module, features: torch.Tensor,
                  pretrained_head: nn.Module | None) -> nn.Module:
        if pretrained_head is not None:
            return pretrained_head
        with ctx.seeded():
            return ctx.build_head(int(features.shape[1]))

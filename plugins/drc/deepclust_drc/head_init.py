"""Head-init `from_pretrain`: use the clustering head the pretrain plugin trained (one-stage methods)."""

from __future__ import annotations

import torch
from torch import nn

from toolkit.api import HeadInitPlugin, PluginError, RunContext


class FromPretrainHeadInit(HeadInitPlugin):
    """Return the pretrained head unchanged; refuse (one line) when the pretrain plugin made none."""

    def init_head(self, ctx: RunContext, backbone: nn.Module, features: torch.Tensor,
                  pretrained_head: nn.Module | None) -> nn.Module:
        if pretrained_head is None:
            raise PluginError("head_init 'from_pretrain': the pretrain plugin produced no clustering head; "
                              "use a one-stage pretrain method (e.g. drc) or another head_init method")
        return pretrained_head

"""Pretrain `none`: keep the freshly initialised backbone (for ablations and end-to-end methods)."""

from __future__ import annotations

from torch import nn

from toolkit.api import PretrainPlugin, PretrainResult, RunContext


class NoPretrain(PretrainPlugin):
    """No pretraining: the backbone stays as built from [model]."""

    cacheable = False

    def num_epochs(self) -> int | None:
        return 0

    def pretrain(self, ctx: RunContext, backbone: nn.Module) -> PretrainResult:
        return PretrainResult(backbone)

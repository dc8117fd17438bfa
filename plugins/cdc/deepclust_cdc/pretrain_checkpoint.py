"""Pretrain `checkpoint`: load a pretrained backbone from a file instead of training one.

Accepts the key layouts of MoCo/solo-learn, SCAN, SPICE and CDC releases and the toolkit's own files
(plugins/cdc/keymap.py); anything that does not fit the [model] backbone is one clear error line.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from deepclust_cdc.keymap import check, map_keys, unwrap
from toolkit.api import PluginError, PretrainPlugin, PretrainResult, RunContext, load_safe


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = Field(..., description="checkpoint file (torch.save output; read with weights_only=True)")
    prefix: str | None = Field(None, description="key prefix of the backbone; default: detected from the known layouts")
    strict: bool = Field(True, description="refuse missing or unexpected keys (False: load the overlap, warn)")


class CheckpointPretrain(PretrainPlugin[Options]):
    """A backbone read from a released checkpoint (never cached: reading the file is the whole stage)."""
    cacheable = False  # loading is cheap, and the recipe-based cache key would not see a changed file

    def num_epochs(self) -> int | None:
        return 0

    def pretrain(self, ctx: RunContext, backbone: nn.Module) -> PretrainResult:
        o = self.options
        path = Path(o.path).expanduser()
        try:
            state = unwrap(load_safe(path))
        except ValueError as exc:
            raise PluginError(f"pretrain checkpoint: {path}: {exc}") from None
        target = backbone.state_dict()
        mapped, prefix = map_keys(state, set(target), o.prefix)
        problems = check(mapped, target)
        shape_problem = any(p.startswith("shape") for p in problems)
        if problems and (o.strict or shape_problem):
            raise PluginError(f"pretrain checkpoint: {path} (prefix {prefix!r}) does not fit backbone "
                              f"{type(backbone).__name__}: " + "; ".join(problems))
        if problems:
            ctx.warn(f"pretrain checkpoint: loading the overlap only: {'; '.join(problems)}")
        backbone.load_state_dict(mapped, strict=False)
        return PretrainResult(backbone.to(ctx.device))

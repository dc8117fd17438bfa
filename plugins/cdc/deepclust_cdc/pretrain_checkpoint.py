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
    stem_check: bool = Field(True, description="refuse weights whose release is known to use another stem than "
                                               "the backbone (SPICE's ResNet-34: a max-pool after the stem)")


#: Key prefixes of SPICE's releases (their ResNet-34 is IIC's ClusterResNet: a max-pool after the stem).
SPICE_PREFIXES = ("feature_module.", "module.feature_module.")


def stem_mismatch(prefix: str, mapped: dict, backbone: nn.Module) -> str | None:
    """Why the weights' stem differs from `backbone`'s, where the keys tell (a max-pool has no weights, so only
    the release's layout can): SPICE's 34-layer weights on a backbone without a max-pool after the stem."""
    spice_34 = prefix in SPICE_PREFIXES and any(k.startswith("layer3.5.") for k in mapped)
    has_pool = isinstance(getattr(backbone, "maxpool", None), nn.MaxPool2d)
    if spice_34 and not has_pool:
        return ("SPICE's ResNet-34 weights were trained with a max-pool after the stem, which this backbone "
                "lacks; set model.backbone=resnet34_maxpool")
    return None


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
        stem = stem_mismatch(prefix, mapped, backbone)
        if stem and o.stem_check:
            raise PluginError(f"pretrain checkpoint: {path}: {stem} (set pretrain.stem_check=false to load anyway)")
        if problems:
            ctx.warn(f"pretrain checkpoint: loading the overlap only: {'; '.join(problems)}")
        backbone.load_state_dict(mapped, strict=False)
        return PretrainResult(backbone.to(ctx.device))

"""Backbones from timm by name (`[model] backbone = "timm:<name>"`), optionally with local weights.

Foundation-model features are what the strongest clustering results now build on; timm gives one
interface to hundreds of them. Weights never come from a hub at run time: pass a local file.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from toolkit.errors import UserError

PREFIX = "timm:"


def is_timm_name(name: str) -> bool:
    return name.startswith(PREFIX)


def check_timm_name(name: str) -> str:
    """Validate 'timm:<model>' against timm's registry (raises ValueError with a hint)."""
    try:
        import timm
    except ImportError:  # pragma: no cover - timm is a dependency
        raise ValueError("timm is not installed; pip install timm") from None
    model = name[len(PREFIX):]
    if not model or not timm.is_model(model):
        close = timm.list_models(f"*{model[:6]}*")[:5] if model else []
        hint = f"; similar: {', '.join(close)}" if close else "; see timm.list_models()"
        raise ValueError(f"unknown timm model {model!r}{hint}")
    return name


class TimmFeatures(nn.Module):
    """A timm model without its classifier: images -> pooled features [B, num_features]."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.out_dim = int(model.num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def build_timm(name: str, in_channels: int, weights: str | None = None) -> nn.Module:
    import timm

    model = timm.create_model(name[len(PREFIX):], pretrained=False, num_classes=0, in_chans=in_channels)
    if weights:
        load_weights(model, Path(weights))
    return TimmFeatures(model)


def load_weights(model: nn.Module, path: Path) -> None:
    """Load a local state dict (.safetensors, or a torch file read with weights_only=True), strictly
    except for classifier keys, and say exactly which keys did not match."""
    from toolkit.files import load_safe

    if not path.is_file():
        raise UserError(f"[model] weights: file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = load_safe(path)
        for key in ("state_dict", "model"):
            if isinstance(state, dict) and isinstance(state.get(key), dict):
                state = state[key]
    own = model.state_dict()
    dropped = [k for k in state if k not in own and k.split(".")[0] in ("fc", "head", "classifier")]
    state = {k: v for k, v in state.items() if k not in dropped}
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise UserError(f"[model] weights {path}: keys do not match the model (missing: {missing[:5]}"
                        f"{'...' if len(missing) > 5 else ''}; unexpected: {unexpected[:5]}"
                        f"{'...' if len(unexpected) > 5 else ''})")
    model.load_state_dict(state)

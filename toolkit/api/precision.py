"""The mixed-precision context the engine and plugins share, so a plugin's forward matches the loop's."""

from __future__ import annotations

import contextlib
from typing import ContextManager

import torch


def autocast(device: torch.device) -> ContextManager[object]:
    """bf16 autocast on CUDA (no loss scaling needed); a no-op elsewhere, where it rarely pays off."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()

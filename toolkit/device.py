"""Pick the compute device from a recipe string and the matching mixed-precision context."""

from __future__ import annotations

import contextlib
import re
from typing import ContextManager

import torch

from toolkit.errors import UserError


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' (cuda when available, else cpu), 'cpu', 'cuda' or 'cuda:N'; fails in one line otherwise."""
    name = name.strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", name)
    if match is None:
        raise UserError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise UserError(f"device {name!r} requested but CUDA is not available; use device = \"cpu\" or \"auto\"")
    index = int(match.group(1)) if match.group(1) is not None else None
    if index is not None and index >= torch.cuda.device_count():
        raise UserError(f"device {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    return torch.device(name)


def autocast(device: torch.device) -> ContextManager[object]:
    """bf16 autocast on CUDA (no loss scaling needed); a no-op elsewhere, where it rarely pays off."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()

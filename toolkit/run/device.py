"""Pick the compute device from a recipe string (`--device`, `[experiment] device`)."""

from __future__ import annotations

import re

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

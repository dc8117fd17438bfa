"""The key of a set of encoded view copies: a hash of everything the features depend on, so a cached set is
only ever reused for the same weights, view settings, images and random draws."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch
from torch import nn


def weights_digest(module: nn.Module) -> str:
    """sha256 of the module's state (names, dtypes, shapes, bytes): any changed weight or statistic changes it."""
    h = hashlib.sha256()
    for name, value in module.state_dict().items():
        tensor = value.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}|{tensor.dtype}|{tuple(value.shape)}".encode())
        h.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return h.hexdigest()


def view_settings(view: Any) -> dict[str, Any]:
    """A view's augmentation settings and normalisation, as plain values."""
    cfg = getattr(view, "cfg", None)
    return {"augment": cfg.model_dump(mode="json") if cfg is not None else None,
            "mean": [float(v) for v in getattr(view, "mean", [])], "std": [float(v) for v in getattr(view, "std", [])]}


def copies_key(module: nn.Module, view: Any, view_name: str, data_fingerprint: str, copies: int, salt: tuple[int, ...],
               seed: int, batch_size: int, device_type: str) -> str:
    parts = {"weights": weights_digest(module), "view": view_name, "settings": view_settings(view),
             "data": data_fingerprint, "copies": copies, "salt": list(salt), "seed": seed, "batch": batch_size,
             "device": device_type, "format": 1}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]

"""Turn numpy arrays or torch tensors (any device/dtype) into what faiss wants: contiguous float32."""

from __future__ import annotations

from typing import Any

import numpy as np


def as_float32(x: Any) -> np.ndarray:
    """A C-contiguous float32 [N, D] numpy copy/view of ``x`` (numpy array or torch tensor)."""
    if hasattr(x, "detach"):  # torch tensor; avoids importing torch here
        x = x.detach().float().cpu().numpy()
    arr = np.ascontiguousarray(x, dtype=np.float32)
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D [N, D] array, got shape {arr.shape}")
    return arr


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; all-zero rows stay zero."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norms, 1e-12), dtype=np.float32)

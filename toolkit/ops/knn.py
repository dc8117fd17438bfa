"""Exact k-nearest neighbours with faiss flat indexes (used for neighbour mining and graphs).

CUDA tensors are searched on their GPU when faiss-gpu is installed; everything else on the CPU.
"""

from __future__ import annotations

from typing import Any, Literal

import faiss
import numpy as np

from toolkit.ops import _gpu
from toolkit.ops._arrays import as_float32, l2_normalise


def knn(
    x: Any,
    k: int,
    *,
    metric: Literal["cosine", "l2"] = "cosine",
    exclude_self: bool = True,
    gpu: bool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Neighbours of every row of ``x`` among the rows of ``x``.

    Returns (scores [N,k] float32, indices [N,k] int64), best first: cosine similarity for
    ``cosine``, squared Euclidean distance for ``l2``. With ``exclude_self`` each point's own index
    is dropped even when duplicates tie with it (one extra neighbour is queried). ``gpu``: None = a
    faiss GPU index when faiss has one and ``x`` is a CUDA tensor.
    """
    data = as_float32(x)
    n, d = data.shape
    limit = n - 1 if exclude_self else n
    if not 1 <= k <= limit:
        raise ValueError(f"knn needs 1 <= k <= {limit} for N={n} points (exclude_self={exclude_self}); got k={k}")
    if metric not in ("cosine", "l2"):
        raise ValueError(f"unknown metric {metric!r}; use 'cosine' or 'l2'")
    if metric == "cosine":
        data = l2_normalise(data)
    if _gpu.use_gpu(gpu, x):
        index: faiss.Index = _gpu.flat_index(d, metric == "cosine", _gpu.gpu_id(x))
    else:
        index = faiss.IndexFlatIP(d) if metric == "cosine" else faiss.IndexFlatL2(d)
    index.add(data)
    scores, indices = index.search(data, k + 1 if exclude_self else k)
    if exclude_self:
        drop = indices == np.arange(n)[:, None]
        drop[~drop.any(axis=1), -1] = True  # self lost among tied duplicates: drop the extra one
        scores = scores[~drop].reshape(n, k)
        indices = indices[~drop].reshape(n, k)
    return np.ascontiguousarray(scores, dtype=np.float32), np.ascontiguousarray(indices, dtype=np.int64)

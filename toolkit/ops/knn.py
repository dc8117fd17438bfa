"""Exact k-nearest neighbours with faiss flat indexes (used for neighbour mining and graphs)."""

from __future__ import annotations

from typing import Any, Literal

import faiss
import numpy as np

from toolkit.ops._arrays import as_float32, l2_normalise, use_gpu


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
    is dropped even when duplicates tie with it (one extra neighbour is queried).
    """
    data = as_float32(x)
    n, d = data.shape
    limit = n - 1 if exclude_self else n
    if not 1 <= k <= limit:
        raise ValueError(f"knn needs 1 <= k <= {limit} for N={n} points (exclude_self={exclude_self}); got k={k}")
    if metric == "cosine":
        data = l2_normalise(data)
        index: faiss.Index = faiss.IndexFlatIP(d)
    elif metric == "l2":
        index = faiss.IndexFlatL2(d)
    else:
        raise ValueError(f"unknown metric {metric!r}; use 'cosine' or 'l2'")
    if use_gpu(gpu):
        index = faiss.index_cpu_to_all_gpus(index)
    index.add(data)
    scores, indices = index.search(data, k + 1 if exclude_self else k)
    if exclude_self:
        drop = indices == np.arange(n)[:, None]
        drop[~drop.any(axis=1), -1] = True  # self lost among tied duplicates: drop the extra one
        scores = scores[~drop].reshape(n, k)
        indices = indices[~drop].reshape(n, k)
    return np.ascontiguousarray(scores, dtype=np.float32), np.ascontiguousarray(indices, dtype=np.int64)

"""k-means on features via faiss (CPU, or all GPUs when faiss has them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import faiss
import numpy as np

from toolkit.ops._arrays import as_float32, l2_normalise, use_gpu


@dataclass
class KMeansResult:
    """centroids float32 [k, D]; labels int64 [N]; inertia = sum of squared distances to own centroid."""

    centroids: np.ndarray
    labels: np.ndarray
    inertia: float


def kmeans(
    x: Any,
    k: int,
    *,
    niter: int = 50,
    nredo: int = 1,
    seed: int = 0,
    spherical: bool = False,
    gpu: bool | None = None,
    init: Literal["kmeans++", "random"] = "kmeans++",
) -> KMeansResult:
    """Cluster rows of ``x`` (numpy or torch, any device) into ``k`` groups; same seed, same result.

    ``spherical=True`` L2-normalises the inputs and keeps unit-norm centroids (cosine k-means);
    points are then assigned by largest inner product. ``init="kmeans++"`` (default) avoids the
    merged-clusters minima that faiss's random init often hits; older faiss builds without it
    fall back to random init. faiss trains on at most 256 points per
    centroid (its default sampling); every point is assigned afterwards.
    """
    data = as_float32(x)
    n, d = data.shape
    if not 1 <= k <= n:
        raise ValueError(f"k-means needs 1 <= k <= number of points; got k={k}, N={n}")
    if spherical:
        data = l2_normalise(data)
    extra: dict[str, Any] = {}
    if init == "kmeans++" and hasattr(faiss, "ClusteringInitMethod_KMEANS_PLUS_PLUS"):
        extra["init_method"] = faiss.ClusteringInitMethod_KMEANS_PLUS_PLUS
    elif init not in ("kmeans++", "random"):
        raise ValueError(f"unknown init {init!r}; use 'kmeans++' or 'random'")
    km = faiss.Kmeans(
        d, k, niter=niter, nredo=nredo, seed=seed, spherical=spherical,
        gpu=use_gpu(gpu), min_points_per_centroid=1, verbose=False, **extra,
    )
    km.train(data)
    scores, labels = km.assign(data)
    centroids = np.ascontiguousarray(km.centroids, dtype=np.float32)
    if spherical:  # scores are inner products: |x - c|^2 = |x|^2 + |c|^2 - 2 x.c
        sq = (data**2).sum(1) + (centroids[labels] ** 2).sum(1) - 2.0 * scores
        inertia = float(np.maximum(sq, 0.0).sum(dtype=np.float64))
    else:
        inertia = float(scores.sum(dtype=np.float64))
    return KMeansResult(centroids=centroids, labels=labels.astype(np.int64), inertia=inertia)

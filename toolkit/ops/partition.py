"""Choosing the head-init partition without labels: k-means, spectral clustering (two kNN graphs) and
over-clustering merged by average linkage (toolkit/ops/merged.py) of the features, and the one with the
highest silhouette (on L2-normalised features, a fixed random sample) kept; k-means wins ties within
KMEANS_MARGIN.

k-means prefers equal sizes and cuts a large class before it keeps a small one; spectral clustering follows
density but sometimes merges; merged small clusters keep long tails apart but blur balanced classes; which
one is right depends on the data and even on the seed. Measured on the baseline recipe's SimCLR features
(benchmarks/partition_choice.py, benchmarks/RESULTS.md), the silhouette picks the most accurate partition (or
one within about 0.03 of it) on most seeds of balanced and long-tailed digits; labels are never read.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from toolkit.ops._arrays import as_float32, l2_normalise
from toolkit.ops.kmeans import kmeans
from toolkit.ops.merged import merged_labels
from toolkit.ops.spectral import spectral_labels

#: The candidates "auto" compares: name -> kNN neighbours of the spectral graph (0: not spectral).
CANDIDATES = {"kmeans": 0, "spectral-10": 10, "spectral-30": 30, "merged": 0}
#: Images the silhouette is computed on (a fixed sample: O(n^2) otherwise).
SILHOUETTE_SAMPLE = 2000
#: k-means is kept unless another candidate's silhouette is higher by more than this. Without it, balanced
#: digits lost 0.12 on one seed in five (k-means 0.913, merged picked at 0.789 by a 0.003 higher silhouette);
#: every margin from 0.005 to 0.02 kept k-means there and changed nothing on the long tails (benchmarks/
#: RESULTS.md, 2026-12-07; chosen on digits, its long tails and lfw_subset).
KMEANS_MARGIN = 0.01


def silhouette(features: Any, labels: np.ndarray, seed: int = 0, sample: int = SILHOUETTE_SAMPLE) -> float:
    """Mean silhouette of `labels` on the L2-normalised features (-1 when fewer than two clusters are used)."""
    from sklearn.metrics import silhouette_score

    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        return -1.0
    data = l2_normalise(as_float32(features))
    size = min(sample, len(data))
    return float(silhouette_score(data, labels, sample_size=size if size < len(data) else None, random_state=seed))


def candidates(features: Any, k: int, seed: int = 0, *, niter: int = 50, nredo: int = 1,
               spherical: bool = False) -> dict[str, np.ndarray]:
    """Every candidate partition of CANDIDATES (a graph with at least as many neighbours as images left out)."""
    found: dict[str, np.ndarray] = {}
    n = len(as_float32(features))
    for name, neighbours in CANDIDATES.items():
        if neighbours and neighbours >= n:
            continue
        if neighbours:
            labels = spectral_labels(features, k, neighbours, seed)
        elif name == "merged":
            labels = merged_labels(features, k, seed, linkage="average", niter=niter)
        else:
            labels = kmeans(features, k, niter=niter, nredo=nredo, seed=seed, spherical=spherical).labels
        found[name] = np.asarray(labels, dtype=np.int64)
    return found


def best_partition(features: Any, k: int, seed: int = 0, *, niter: int = 50, nredo: int = 1,
                   spherical: bool = False) -> tuple[str, np.ndarray, dict[str, float]]:
    """(name, labels, silhouette per candidate) of the candidate partition with the highest silhouette, k-means
    given a head start of KMEANS_MARGIN."""
    found = candidates(features, k, seed, niter=niter, nredo=nredo, spherical=spherical)
    scores = {name: silhouette(features, labels, seed) for name, labels in found.items()}
    best = max(scores, key=lambda name: scores[name] + (KMEANS_MARGIN if name == "kmeans" else 0.0))
    return best, found[best], scores

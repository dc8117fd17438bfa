"""Estimating the number of clusters without labels, for `[data] num_clusters = "auto"`.

Two criteria, both on L2-normalised features (what the clustering heads see):

- ``eigengap``: the spectrum of the normalised Laplacian of a symmetric kNN graph. A graph made of k
  weakly joined groups has k eigenvalues near 0 and then a jump; the K with the largest jump
  lambda_{K+1} - lambda_K wins. One sparse eigen-solve, no k-means (scipy's ARPACK via `eigsh`).
- ``silhouette``: k-means (faiss) for every K in the range and the mean silhouette of each partition
  (scikit-learn); the highest wins. Slower (one k-means per K) but it scores the partitions that the
  head-init will actually build.

Which one is the default was decided by measurement (`DEFAULT_CRITERION`), not by taste. Neither is
reliable on weakly clustered features: the chosen K is printed, logged and plotted so a user can judge it,
and `num_clusters` stays overridable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from toolkit.ops._arrays import as_float32, l2_normalise

Criterion = Literal["eigengap", "silhouette"]

#: The default criterion, chosen by benchmarks/estimate_k.py on the suite's data sets with the baseline's
#: SimCLR features (2026-12-03, benchmarks/RESULTS.md): silhouette landed within 1 of the true K on 2 of 5
#: data sets (1 exactly), the eigengap on 2 (0 exactly) with 30 neighbours and on none with 10.
DEFAULT_CRITERION: Criterion = "silhouette"


@dataclass
class KEstimate:
    """The chosen K, the candidates and each candidate's score (higher is better for both criteria)."""

    k: int
    ks: list[int]
    scores: list[float]
    criterion: str


def estimate_k(features: Any, k_range: tuple[int, int] = (2, 50), criterion: Criterion = DEFAULT_CRITERION,
               seed: int = 0, max_points: int = 4000, neighbours: int = 30) -> KEstimate:
    """Estimate K in `k_range` (inclusive) from `features` [N, D] by `criterion` (see the module docstring).

    At most `max_points` rows are used (a seeded random subset), which keeps both criteria to seconds.
    """
    x = l2_normalise(as_float32(features))
    if len(x) > max_points:
        x = x[np.random.default_rng(seed).choice(len(x), max_points, replace=False)]
    low, high = int(k_range[0]), min(int(k_range[1]), len(x) - 2)
    if low < 2 or high < low:
        raise ValueError(f"k_range {tuple(k_range)} is empty for {len(x)} points (K must be in 2..N-2)")
    if criterion == "eigengap":
        ks, scores = _eigengap(x, low, high, neighbours)
    elif criterion == "silhouette":
        ks, scores = _silhouette(x, low, high, seed)
    else:
        raise ValueError(f"unknown criterion {criterion!r}; use 'eigengap' or 'silhouette'")
    best = int(np.argmax(scores))
    return KEstimate(ks[best], ks, scores, criterion)


def _eigengap(x: np.ndarray, low: int, high: int, neighbours: int) -> tuple[list[int], list[float]]:
    """Gaps lambda_{K+1} - lambda_K of the normalised Laplacian of the symmetric kNN graph, K in low..high."""
    from scipy.sparse import diags, identity
    from scipy.sparse.linalg import eigsh

    from toolkit.ops.spectral import knn_graph

    n = len(x)
    w = knn_graph(x, neighbours)
    d = np.asarray(w.sum(axis=1)).ravel()
    inv_sqrt = diags(1.0 / np.sqrt(np.maximum(d, 1e-12)))
    # the smallest eigenvalues of L = I - S are 1 minus the largest of S = D^-1/2 W D^-1/2 (+ I: S + I is
    # positive semi-definite, which keeps ARPACK's "largest algebraic" search fast and stable)
    shifted = inv_sqrt @ w @ inv_sqrt + identity(n)
    count = min(high + 1, n - 1)
    values = eigsh(shifted, k=count, which="LA", return_eigenvectors=False, v0=np.ones(n) / np.sqrt(n))
    lam = np.sort(2.0 - values)  # eigenvalues of L, ascending: lam[0] ~ 0
    ks = list(range(low, min(high, count - 1) + 1))
    return ks, [float(lam[k] - lam[k - 1]) for k in ks]


def _silhouette(x: np.ndarray, low: int, high: int, seed: int) -> tuple[list[int], list[float]]:
    """Mean silhouette (cosine) of a spherical k-means partition for each K in low..high."""
    from sklearn.metrics import silhouette_score

    from toolkit.ops.kmeans import kmeans

    ks, scores = [], []
    for k in range(low, high + 1):
        labels = np.asarray(kmeans(x, k, niter=30, nredo=2, seed=seed, spherical=True).labels)
        ks.append(k)
        scores.append(float(silhouette_score(x, labels, metric="cosine")) if len(set(labels.tolist())) > 1 else -1.0)
    return ks, scores

"""Spectral clustering on a kNN graph of features: faiss finds the neighbours, scikit-learn's
`spectral_clustering` embeds and assigns.

k-means prefers clusters of equal size and splits a large class before it keeps a small one; on
long-tailed data a kNN graph follows the density instead. Measured on long-tailed digits (ratio 10,
baseline SimCLR features): ACC 0.830 against 0.680 for k-means (benchmarks/RESULTS.md, 2026-12-03).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.sparse import coo_matrix, csr_matrix

from toolkit.ops._arrays import as_float32, l2_normalise


def knn_graph(x: Any, neighbours: int = 10) -> csr_matrix:
    """The symmetric kNN graph of the rows of `x` (cosine similarity, clipped at 0, as edge weight)."""
    from toolkit.ops.knn import knn

    data = l2_normalise(as_float32(x))
    n = len(data)
    sims, idx = knn(data, min(neighbours, n - 1), metric="cosine")
    rows = np.repeat(np.arange(n), idx.shape[1])
    weights = np.clip(sims.reshape(-1), 0.0, None) + 1e-6  # never 0: every kNN edge stays an edge
    graph = coo_matrix((weights, (rows, idx.reshape(-1))), shape=(n, n)).tocsr()
    return graph.maximum(graph.T)  # i ~ j when either is among the other's neighbours


def spectral_labels(x: Any, k: int, neighbours: int = 10, seed: int = 0) -> np.ndarray:
    """Cluster labels [N] of `x` [N, D] into `k` groups by spectral clustering of its kNN graph."""
    from sklearn.cluster import spectral_clustering

    n = len(x)
    if not 2 <= k < n:
        raise ValueError(f"spectral clustering needs 2 <= k < N; got k={k} for N={n}")
    graph = knn_graph(x, neighbours)
    labels = spectral_clustering(graph, n_clusters=k, assign_labels="cluster_qr", random_state=seed)
    return np.asarray(labels, dtype=np.int64)

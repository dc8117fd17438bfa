"""Over-clustering merged by linkage (toolkit/ops/merged.py): on a long tail where k-means into K cuts the large
class and folds the small ones together, the merged partition keeps every class whole."""

from __future__ import annotations

import numpy as np
import pytest

from toolkit.metrics import cluster_acc
from toolkit.ops.kmeans import kmeans
from toolkit.ops.merged import merged_labels


def _long_tail(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One wide class of 600 points and three tight classes of 20, on directions of a 3-D sphere."""
    rng = np.random.default_rng(seed)
    directions = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [-1, -1, 0]], dtype=np.float64)
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    sizes, spreads = (600, 20, 20, 20), (0.45, 0.08, 0.08, 0.08)
    points = [d + rng.normal(0, s, (n, 3)) for d, n, s in zip(directions, sizes, spreads)]
    return np.concatenate(points).astype(np.float32), np.repeat(np.arange(4), sizes)


def test_average_linkage_keeps_a_long_tail_that_kmeans_cuts() -> None:
    x, labels = _long_tail()
    cut = kmeans(x, 4, nredo=5, seed=0, spherical=True).labels
    merged = merged_labels(x, 4, seed=0, linkage="average")
    assert cluster_acc(cut, labels) < 0.8  # k-means spends clusters on the wide class
    assert cluster_acc(merged, labels) > 0.95
    assert merged.shape == (len(x),) and merged.dtype == np.int64 and len(np.unique(merged)) == 4
    assert np.array_equal(merged, merged_labels(x, 4, seed=0, linkage="average"))  # same seed, same partition


def test_ward_merges_small_clusters_into_k_groups() -> None:
    x, labels = _long_tail()
    merged = merged_labels(x, 4, seed=0, linkage="ward")
    assert len(np.unique(merged)) == 4
    # every small cluster lies inside one group: the tight classes are never split
    for c in (1, 2, 3):
        assert len(np.unique(merged[labels == c])) == 1


def test_small_data_falls_back_to_kmeans_and_bad_k_is_refused() -> None:
    x, _ = _long_tail()
    few = x[:: len(x) // 10][:10]  # 10 points, K = 3: fewer than 3 points per small cluster
    assert np.array_equal(merged_labels(few, 3, seed=0), kmeans(few, 3, seed=0, spherical=True).labels)
    with pytest.raises(ValueError, match="2 <= k < N"):
        merged_labels(few, 10)

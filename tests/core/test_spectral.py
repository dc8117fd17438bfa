"""Spectral clustering of a kNN graph (toolkit.ops.spectral) keeps a long class whole where k-means, which
prefers equal sizes, cuts it in two and merges two small classes instead."""

from __future__ import annotations

import numpy as np
import pytest

from toolkit.metrics import cluster_acc
from toolkit.ops.kmeans import kmeans
from toolkit.ops.spectral import knn_graph, spectral_labels


def long_and_small(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A long thin class of 500 points and two small tight ones of 40 and 20, lifted to 3-D far from the
    origin so cosine similarity follows the plane's distances."""
    rng = np.random.default_rng(seed)
    line = np.stack([rng.uniform(0, 10, 500), rng.normal(0, 0.05, 500)], 1)
    a = rng.normal([5, 2], 0.1, (40, 2))
    b = rng.normal([5, 4], 0.1, (20, 2))
    plane = np.concatenate([line, a, b])
    x = np.concatenate([plane, np.full((len(plane), 1), 60.0)], 1).astype(np.float32)
    return x, np.repeat([0, 1, 2], [500, 40, 20])


def test_spectral_keeps_the_long_class_where_kmeans_cuts_it() -> None:
    x, y = long_and_small()
    spectral = cluster_acc(spectral_labels(x, 3, neighbours=10, seed=0), y)
    km = cluster_acc(np.asarray(kmeans(x, 3, nredo=5, seed=0, spherical=True).labels), y)
    assert spectral > 0.98, spectral
    assert km < 0.9, km  # the failure the option exists for


def test_graph_is_symmetric_with_positive_weights() -> None:
    x, _ = long_and_small()
    g = knn_graph(x, 5)
    assert abs(g - g.T).max() == 0 and g.min() >= 0 and (g.getnnz(axis=1) >= 5).all()


def test_k_outside_the_data_is_refused() -> None:
    x, _ = long_and_small()
    with pytest.raises(ValueError, match="2 <= k < N"):
        spectral_labels(x[:5], 5)

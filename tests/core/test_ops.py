"""faiss k-means / kNN wrappers and Hungarian matching on small hand-made inputs."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from toolkit.metrics import cluster_acc
from toolkit.ops.kmeans import kmeans
from toolkit.ops.knn import knn
from toolkit.ops.matching import contingency, hungarian_map


def _blobs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    truth = np.repeat(np.arange(3), 40)
    return centres[truth] + 0.1 * rng.standard_normal((120, 2)), truth


def test_kmeans_recovers_blobs_and_inertia():
    x, truth = _blobs()
    for seed in range(5):  # k-means++ init: no seed may merge two blobs
        assert cluster_acc(kmeans(x, 3, seed=seed).labels, truth) == 1.0
    res = kmeans(x, 3, seed=1)
    assert res.centroids.shape == (3, 2) and res.centroids.dtype == np.float32
    assert res.labels.shape == (120,) and res.labels.dtype == np.int64
    assert cluster_acc(res.labels, truth) == 1.0
    expected = ((x - res.centroids[res.labels]) ** 2).sum()
    assert res.inertia == pytest.approx(expected, rel=1e-4)


def test_kmeans_deterministic_per_seed_and_accepts_torch():
    x, _ = _blobs()
    x = x + np.random.default_rng(5).standard_normal(x.shape) * 3  # harder data so seeds matter
    a, b = kmeans(x, 5, seed=3), kmeans(torch.from_numpy(x).double(), 5, seed=3)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.centroids, b.centroids)


def test_kmeans_spherical_unit_centroids():
    x, truth = _blobs()
    res = kmeans(x + np.array([20.0, 20.0]), 3, spherical=True)
    np.testing.assert_allclose(np.linalg.norm(res.centroids, axis=1), 1.0, rtol=1e-5)
    assert res.inertia >= 0


def test_kmeans_k_larger_than_n():
    with pytest.raises(ValueError, match="k="):
        kmeans(np.zeros((3, 2)), 4)


def test_kmeans_trains_on_every_point_when_asked():
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(0, 1, (3000, 2)), rng.normal(8, 1, (3000, 2))]).astype(np.float32)

    def gap(result) -> float:  # centroid vs the mean of the points assigned to it (0 at a Lloyd fixed point)
        return max(float(np.abs(result.centroids[c] - x[result.labels == c].mean(0)).max()) for c in range(2))

    assert gap(kmeans(x, 2, niter=30, seed=0, sample_per_centroid=None)) < 1e-4
    assert gap(kmeans(x, 2, niter=30, seed=0)) > 1e-3  # faiss's default: fit to 256 sampled points per centroid


def test_knn_l2_exact():
    x = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [7.0, 0.0]])
    dist, idx = knn(x, 2, metric="l2")
    np.testing.assert_array_equal(idx, [[1, 2], [0, 2], [1, 0], [2, 1]])
    np.testing.assert_allclose(dist, [[1, 9], [1, 4], [4, 9], [16, 36]])
    assert dist.dtype == np.float32 and idx.dtype == np.int64
    _, with_self = knn(x, 1, metric="l2", exclude_self=False)
    np.testing.assert_array_equal(with_self[:, 0], [0, 1, 2, 3])


def test_knn_cosine_exact():
    x = np.array([[5.0, 0.0], [1.0, 0.2], [0.0, 1.0], [-1.0, 0.0]])
    sim, idx = knn(torch.from_numpy(x), 1)
    np.testing.assert_array_equal(idx[:, 0], [1, 0, 1, 2])
    c = 1 / np.sqrt(1.04)
    np.testing.assert_allclose(sim[:, 0], [c, c, 0.2 * c, 0.0], atol=1e-6)


def test_knn_exclude_self_with_duplicates():
    x = np.array([[1.0, 1.0]] * 4 + [[-5.0, 3.0]])
    for metric in ("cosine", "l2"):
        for k in (1, 3):
            _, idx = knn(x, k, metric=metric)
            for i in range(4):
                assert i not in idx[i]
                assert set(idx[i]) <= {0, 1, 2, 3}
                assert len(set(idx[i])) == k


def test_knn_k_too_large():
    with pytest.raises(ValueError):
        knn(np.zeros((3, 2)), 3)


def test_contingency_counts():
    table = contingency(np.array([0, 0, 1, 2]), np.array([1, 1, 0, 1]), n_pred=4, n_true=3)
    np.testing.assert_array_equal(table, [[0, 2, 0], [1, 0, 0], [0, 1, 0], [0, 0, 0]])


def test_hungarian_rectangular():
    # 4 clusters, 2 classes: clusters 1 and 3 carry most of each class; 0 and 2 unmatched
    pred = np.array([0, 1, 1, 1, 2, 3, 3, 3])
    target = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    np.testing.assert_array_equal(hungarian_map(pred, target), [-1, 0, -1, 1])
    # 2 clusters, 3 classes: each cluster gets a distinct class, class 1 unused
    pred = np.array([0, 0, 0, 1, 1, 1])
    target = np.array([0, 0, 1, 2, 2, 1])
    np.testing.assert_array_equal(hungarian_map(pred, target), [0, 2])
    # empty cluster 1 in a square table: left with the leftover class
    np.testing.assert_array_equal(hungarian_map(np.array([0, 2]), np.array([1, 0]), n_true=3), [1, 2, 0])


def test_torch_then_faiss_in_one_process():
    code = (
        "import torch, numpy as np\n"
        "t = torch.randn(64, 8)\n"
        "from toolkit.ops.kmeans import kmeans\n"
        "from toolkit.ops.knn import knn\n"
        "print(kmeans(t, 4).labels.shape, knn(t, 3)[1].shape)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stderr
    assert "(64,) (64, 3)" in out.stdout

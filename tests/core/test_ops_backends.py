"""k-means backends (faiss, torch) and the rule that picks faiss GPU indexes; GPU cases skip without one."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from sklearn.metrics import normalized_mutual_info_score

from toolkit.ops import _gpu
from toolkit.ops.kmeans import kmeans, pick_backend
from toolkit.ops.knn import knn

FAISS_GPU = _gpu.faiss_gpus() > 0 and torch.cuda.is_available()


def _blobs(n: int = 600, k: int = 6, d: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k, n)
    return (rng.standard_normal((k, d)) * 4)[truth].astype(np.float32) + rng.standard_normal((n, d)).astype(np.float32), truth


def test_torch_backend_recovers_blobs_and_agrees_with_faiss() -> None:
    x, truth = _blobs()
    a, b = kmeans(x, 6, nredo=3, seed=0), kmeans(x, 6, nredo=3, seed=0, backend="torch")
    assert normalized_mutual_info_score(truth, b.labels) > 0.95
    assert normalized_mutual_info_score(a.labels, b.labels) > 0.95
    assert b.centroids.shape == (6, 16) and b.labels.dtype == np.int64
    assert b.inertia == pytest.approx(float(((x - b.centroids[b.labels]) ** 2).sum()), rel=1e-3)
    again = kmeans(torch.from_numpy(x), 6, nredo=3, seed=0, backend="torch")
    np.testing.assert_array_equal(b.labels, again.labels)


def test_torch_backend_keeps_every_cluster_and_spherical_norms() -> None:
    x, _ = _blobs(n=120)
    res = kmeans(x, 60, niter=10, nredo=2, seed=1, backend="torch")  # about 2 points per cluster, as CDC's batches
    assert len(np.unique(res.labels)) == 60
    sph = kmeans(x, 6, nredo=2, seed=1, spherical=True, backend="torch")
    np.testing.assert_allclose(np.linalg.norm(sph.centroids, axis=1), 1.0, atol=1e-5)


def test_auto_rule_uses_faiss_on_cpu_and_torch_for_small_cuda_inputs() -> None:
    cpu = torch.zeros(1000, 8)
    fake_cuda = SimpleNamespace(device=torch.device("cuda", 0), shape=(1000, 8))
    assert pick_backend(cpu, 500, 10) == "faiss" and pick_backend(np.zeros((1000, 8)), 500, 10) == "faiss"
    assert pick_backend(fake_cuda, 500, 10) == "torch"
    assert pick_backend(SimpleNamespace(device=torch.device("cuda"), shape=(50_000, 8)), 10, 1) == "faiss"
    with pytest.raises(ValueError, match="backend"):
        kmeans(cpu, 2, backend="sklearn")  # type: ignore[arg-type]


def test_faiss_gpu_only_for_cuda_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cuda = SimpleNamespace(device=torch.device("cuda", 0))
    monkeypatch.setattr(_gpu, "faiss_gpus", lambda: 0)
    assert not _gpu.use_gpu(None, fake_cuda)
    with pytest.raises(ValueError, match="no GPU"):
        _gpu.use_gpu(True)
    monkeypatch.setattr(_gpu, "faiss_gpus", lambda: 1)
    assert _gpu.use_gpu(None, fake_cuda) and not _gpu.use_gpu(None, np.zeros((3, 2))) and not _gpu.use_gpu(None, torch.zeros(3, 2))
    assert not _gpu.use_gpu(False, fake_cuda)


@pytest.mark.skipif(not FAISS_GPU, reason="needs faiss-gpu and a CUDA device")
def test_faiss_gpu_kmeans_and_knn_match_cpu() -> None:
    x, _ = _blobs(n=20_000, k=10, d=32)
    gpu_x = torch.from_numpy(x).cuda()
    a, b = kmeans(x, 10, nredo=2, seed=0), kmeans(gpu_x, 10, nredo=2, seed=0, backend="faiss")
    assert normalized_mutual_info_score(a.labels, b.labels) > 0.95
    small = gpu_x[:1000]
    assert normalized_mutual_info_score(kmeans(small, 10, seed=0).labels, kmeans(small.cpu(), 10, seed=0).labels) > 0.9
    _, cpu_idx = knn(x[:2000], 5)
    _, gpu_idx = knn(gpu_x[:2000], 5)
    assert (cpu_idx == gpu_idx).mean() > 0.99

"""k-means on features: faiss (CPU, or a faiss GPU index for CUDA tensors), or torch for small CUDA problems.

Backend "auto": a CUDA tensor with few points (CDC's per-batch mini-clusters) is clustered by
`kmeans_torch` on its device, because faiss's Lloyd loop returns to the host every iteration; a larger
CUDA tensor goes to faiss on the GPU when faiss-gpu is installed; everything else to faiss on the CPU.
A CPU run therefore gives the same partitions whether or not a GPU exists.

Small problems run faiss on one CPU thread: its Lloyd loop has many short OpenMP regions, which stall
whenever another process holds a core (on 2 shared cores, 1,000 x 512 into 500 clusters took 1.5-11 s
with two threads and 0.4 s with one). Large problems keep all threads.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Literal

import faiss
import numpy as np

from toolkit.ops import _gpu
from toolkit.ops._arrays import as_float32, l2_normalise


@dataclass
class KMeansResult:
    """centroids float32 [k, D]; labels int64 [N]; inertia = sum of squared distances to own centroid."""

    centroids: np.ndarray
    labels: np.ndarray
    inertia: float


Backend = Literal["auto", "faiss", "torch"]
#: "auto" uses the torch backend for CUDA tensors of at most this many points ...
TORCH_MAX_POINTS = 16_384
#: ... whose restarts x points x clusters distance table stays small (2**26 floats = 256 MB).
TORCH_MAX_TABLE = 2**26


#: faiss's default training sample per centroid (`kmeans(sample_per_centroid=None)` trains on every point).
FAISS_SAMPLE = 256

#: faiss clusters at most this many points on a single thread (see the module docstring).
SINGLE_THREAD_MAX_POINTS = 4096


@contextmanager
def _threads_for(n: int) -> Iterator[None]:
    """One OpenMP thread for small problems, restored afterwards (torch shares the same OpenMP runtime)."""
    if n > SINGLE_THREAD_MAX_POINTS or not hasattr(faiss, "omp_set_num_threads"):
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def pick_backend(x: Any, k: int, nredo: int, backend: Backend = "auto") -> str:
    """'torch' or 'faiss' for these inputs (see the module docstring for the rule)."""
    if backend != "auto":
        return backend
    if not _gpu.on_cuda(x):
        return "faiss"
    n = int(x.shape[0])
    return "torch" if n <= TORCH_MAX_POINTS and n * k * nredo <= TORCH_MAX_TABLE else "faiss"


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
    backend: Backend = "auto",
    sample_per_centroid: int | None = FAISS_SAMPLE,
) -> KMeansResult:
    """Cluster rows of ``x`` (numpy or torch, any device) into ``k`` groups; same seed, same result.

    ``spherical=True`` L2-normalises the inputs and keeps unit-norm centroids (cosine k-means);
    points are then assigned by largest inner product. ``init="kmeans++"`` (default) avoids the
    merged-clusters minima that faiss's random init often hits; older faiss builds without it
    fall back to random init. ``sample_per_centroid``: faiss trains on a random sample of at most this many
    points per centroid (256, its default) and assigns every point afterwards; None trains on all points
    (CDC's layer-2 init on CIFAR-10 would otherwise fit 10 centroids to 2,560 of 60,000 activations).
    The torch backend always uses every point. ``gpu`` (faiss only): None =
    a faiss GPU index when faiss has one and ``x`` is a CUDA tensor. ``backend``: see `pick_backend`;
    the torch backend always uses k-means++ init.
    """
    if backend not in ("auto", "faiss", "torch"):
        raise ValueError(f"unknown backend {backend!r}; use 'auto', 'faiss' or 'torch'")
    if pick_backend(x, k, nredo, backend) == "torch":
        return _via_torch(x, k, niter=niter, nredo=nredo, seed=seed, spherical=spherical)
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
        min_points_per_centroid=1, verbose=False,
        max_points_per_centroid=sample_per_centroid if sample_per_centroid is not None else n // k + 1, **extra,
    )
    if _gpu.use_gpu(gpu, x):  # a flat index on the input's GPU, with the process's shared resources
        km.index = _gpu.flat_index(d, spherical, _gpu.gpu_id(x))
    with _threads_for(n):
        km.train(data)
        scores, labels = km.assign(data)
    centroids = np.ascontiguousarray(km.centroids, dtype=np.float32)
    if spherical:  # scores are inner products: |x - c|^2 = |x|^2 + |c|^2 - 2 x.c
        sq = (data**2).sum(1) + (centroids[labels] ** 2).sum(1) - 2.0 * scores
        inertia = float(np.maximum(sq, 0.0).sum(dtype=np.float64))
    else:
        inertia = float(scores.sum(dtype=np.float64))
    return KMeansResult(centroids=centroids, labels=labels.astype(np.int64), inertia=inertia)


def _via_torch(x: Any, k: int, *, niter: int, nredo: int, seed: int, spherical: bool) -> KMeansResult:
    import torch

    from toolkit.ops.kmeans_torch import kmeans_torch

    tensor = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x, dtype=np.float32))
    if tensor.ndim != 2:
        raise ValueError(f"expected a 2-D [N, D] array, got shape {tuple(tensor.shape)}")
    out = kmeans_torch(tensor, k, niter=niter, nredo=nredo, seed=seed, spherical=spherical)
    return KMeansResult(centroids=out.centroids.cpu().numpy().astype(np.float32, copy=False),
                        labels=out.labels.cpu().numpy(), inertia=float(out.inertia))

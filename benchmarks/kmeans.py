"""k-means: faiss (what toolkit.ops uses) versus scikit-learn, on the sizes the methods use.

Defaults are the data-set-level sizes (50,000 x 512 features into 10, 500 and 1,000 clusters: head
initialisation, over-clustering); `--batch-case` adds CDC's per-batch problem (1,000 x 512 into 500,
10 restarts). Per size: seconds of each backend, the speed-up over scikit-learn, inertia relative to
scikit-learn's, and agreement with scikit-learn's partition (NMI). As a yardstick for agreement,
"sklearn, other seed" is scikit-learn against itself with another seed. On a CUDA device the features
are CUDA tensors, so toolkit.ops picks faiss on the GPU (when faiss-gpu is installed) or the torch
backend (small problems); on the CPU both toolkit backends are shown.

    python benchmarks/kmeans.py                              # the issue's sizes (scikit-learn takes minutes)
    python benchmarks/kmeans.py --n 10000 --clusters 10,100,200 --batch-case
"""

from __future__ import annotations

import argparse
import time
from datetime import date
from typing import Callable

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import normalized_mutual_info_score as nmi

from _common import device_name, set_threads, sync, table
from toolkit.run.device import resolve_device
from toolkit.ops._gpu import faiss_gpus
from toolkit.ops.kmeans import kmeans


def features(n: int, dim: int, classes: int, seed: int) -> np.ndarray:
    """Non-negative, L2-normalised 'backbone features': `classes` noisy directions, ReLU'd."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes, dim)).astype(np.float32)
    x = centres[rng.integers(0, classes, n)] + 1.5 * rng.standard_normal((n, dim)).astype(np.float32)
    x = np.maximum(x, 0.0)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def run(fn: Callable[[], tuple[np.ndarray, float]], device: torch.device) -> tuple[float, np.ndarray, float]:
    sync(device)
    start = time.perf_counter()
    labels, inertia = fn()
    sync(device)
    return time.perf_counter() - start, labels, inertia


def case_rows(x: np.ndarray, k: int, niter: int, nredo: int, device: torch.device, seed: int) -> list[list[object]]:
    def sk(s: int) -> Callable[[], tuple[np.ndarray, float]]:
        def go() -> tuple[np.ndarray, float]:
            km = KMeans(k, init="k-means++", n_init=nredo, max_iter=niter, algorithm="lloyd", random_state=s).fit(x)
            return km.labels_, float(km.inertia_)
        return go

    def toolkit(backend: str, data: object) -> Callable[[], tuple[np.ndarray, float]]:
        def go() -> tuple[np.ndarray, float]:
            r = kmeans(data, k, niter=niter, nredo=nredo, seed=seed, backend=backend)  # type: ignore[arg-type]
            return r.labels, r.inertia
        return go

    on_device = torch.from_numpy(x).to(device)
    where = "GPU" if device.type == "cuda" and faiss_gpus() > 0 else "CPU"
    sides: list[tuple[str, Callable[[], tuple[np.ndarray, float]]]] = [
        (f"faiss ({where})", toolkit("faiss", on_device)), (f"torch ({device.type})", toolkit("torch", on_device))]
    if device.type == "cuda":
        sides.insert(0, ("toolkit auto", toolkit("auto", on_device)))
    ref_t, ref_labels, ref_inertia = run(sk(seed), torch.device("cpu"))
    _, other_labels, _ = run(sk(seed + 1), torch.device("cpu"))
    size = f"{len(x):,} x {x.shape[1]} -> {k} (nredo {nredo})"
    rows: list[list[object]] = [[size, "scikit-learn", ref_t, 1.0, 1.0, 1.0],
                                [size, "sklearn, other seed", "", "", "", nmi(ref_labels, other_labels)]]
    for name, fn in sides:
        t, labels, inertia = run(fn, device)
        rows.append([size, name, t, ref_t / t, inertia / ref_inertia, nmi(ref_labels, labels)])
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=50_000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--clusters", default="10,500,1000", help="comma-separated k")
    p.add_argument("--niter", type=int, default=50)
    p.add_argument("--nredo", type=int, default=1, help="restarts (scikit-learn's n_init)")
    p.add_argument("--batch-case", action="store_true", help="also CDC's per-batch problem: 1,000 x dim -> 500, 10 restarts")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: default)")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    set_threads(args.threads)
    device = resolve_device(args.device)
    x = features(args.n, args.dim, 10, args.seed)
    rows: list[list[object]] = []
    for k in (int(c) for c in args.clusters.split(",")):
        rows += case_rows(x, k, args.niter, args.nredo, device, args.seed)
    if args.batch_case:
        rows += case_rows(x[:1000], min(500, 1000), args.niter, 10, device, args.seed)
    print(f"{date.today()}  device: {device_name(device)}  niter {args.niter}")
    print(table(["size", "backend", "seconds", "speed-up vs sklearn", "inertia / sklearn", "NMI vs sklearn"], rows))


if __name__ == "__main__":
    main()

"""k-means in torch on the tensor's own device, all restarts at once.

For small problems on a GPU (CDC's per-batch mini-clusters: ~1,000 points into ~500 clusters, 10
restarts, every step) faiss is the wrong tool: its Lloyd loop updates centroids on the host, so each
iteration round-trips to the CPU. Here every restart runs as one batched tensor program and nothing is
read back until the caller asks. Random draws come from a CPU generator, so a seed gives the same
initial centroids on CPU and GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class TorchKMeans:
    """centroids [k, D] float32, labels [N] int64, inertia (0-dim), all on the input's device."""

    centroids: torch.Tensor
    labels: torch.Tensor
    inertia: torch.Tensor


def _sq_dist(x: torch.Tensor, x_sq: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Squared distances [R, N, k] between points [N, D] and each restart's centroids [R, k, D]."""
    c_sq = (c * c).sum(-1)  # [R, k]
    cross = torch.matmul(x, c.transpose(1, 2))  # [R, N, k]
    return (x_sq[None, :, None] - 2.0 * cross + c_sq[:, None, :]).clamp_min_(0.0)


def _kmeans_pp(x: torch.Tensor, x_sq: torch.Tensor, k: int, restarts: int, gen: torch.Generator) -> torch.Tensor:
    """k-means++ seeding for every restart at once: each new centre drawn with probability ~ D^2."""
    n = x.shape[0]
    first = torch.randint(n, (restarts,), generator=gen).to(x.device)
    draws = torch.rand(k, restarts, 1, generator=gen, dtype=torch.float64).to(x.device)
    centres = x.new_empty(restarts, k, x.shape[1])
    centres[:, 0] = x[first]
    d2 = (x_sq[None] - 2.0 * centres[:, 0] @ x.t() + x_sq[first][:, None]).clamp_min_(0.0)  # [R, N]
    for j in range(1, k):
        weights = d2.double() + 1e-30  # all-zero rows (duplicates): uniform draw
        cdf = weights.cumsum(1)
        pick = torch.searchsorted(cdf, draws[j] * cdf[:, -1:]).clamp_max_(n - 1).squeeze(1)  # [R]
        c = x[pick]
        centres[:, j] = c
        d2 = torch.minimum(d2, (x_sq[None] - 2.0 * c @ x.t() + x_sq[pick][:, None]).clamp_min_(0.0))
    return centres


def kmeans_torch(x: torch.Tensor, k: int, *, niter: int = 50, nredo: int = 1, seed: int = 0,
                 spherical: bool = False, check_every: int = 5) -> TorchKMeans:
    """Lloyd's k-means with k-means++ seeding; the restart with the lowest inertia is kept.

    An empty cluster is moved to the point farthest from its centre (as scikit-learn does), so small
    batches clustered into many groups keep all k clusters. ``spherical`` clusters unit vectors with
    unit centroids (assignment by inner product, as faiss does). Like faiss, it stops early once no
    assignment changes in any restart; that is checked every ``check_every`` iterations (a host read).
    """
    x = x.detach().float()
    if spherical:
        x = F.normalize(x, dim=1)
    n, d = x.shape
    if not 1 <= k <= n:
        raise ValueError(f"k-means needs 1 <= k <= number of points; got k={k}, N={n}")
    gen = torch.Generator().manual_seed(int(seed))
    x_sq = (x * x).sum(1)
    centres = _kmeans_pp(x, x_sq, k, nredo, gen)
    rows = torch.arange(nredo, device=x.device)[:, None]
    stacked, ones = x.repeat(nredo, 1), x.new_ones(nredo * n)  # every restart's copy, for index_add
    previous: torch.Tensor | None = None
    for it in range(niter):
        dist = _sq_dist(x, x_sq, centres)
        mind, labels = dist.min(-1)  # [R, N]
        if previous is not None and it % check_every == 0 and torch.equal(labels, previous):
            break  # converged: the centres already are the means of these assignments
        previous = labels
        flat = (labels + rows * k).reshape(-1)
        sums = x.new_zeros(nredo * k, d).index_add_(0, flat, stacked).view(nredo, k, d)
        counts = x.new_zeros(nredo * k).index_add_(0, flat, ones).view(nredo, k)
        new = sums / counts.clamp_min(1.0)[..., None]
        empty = counts == 0
        rank = (empty.cumsum(1) - 1).clamp(0, n - 1)  # i-th empty cluster takes the i-th farthest point
        far = mind.argsort(dim=1, descending=True).gather(1, rank)
        centres = torch.where(empty[..., None], x[far], new)
        if spherical:
            centres = F.normalize(centres, dim=-1)
    mind, labels = _sq_dist(x, x_sq, centres).min(-1)
    inertia = mind.double().sum(1)  # [R]
    best = inertia.argmin()
    return TorchKMeans(centres[best], labels[best].long(), inertia[best])

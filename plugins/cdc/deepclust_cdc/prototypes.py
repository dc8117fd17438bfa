"""Feature-prototype initialisation of an MLP head (CDC, arXiv:2403.02998 Section 3.1): k-means centroids
become weights.

Layer 1 gets H prototypes of the normalised features, layer 2 gets C prototypes of the hidden
activations, biases are zero, and each weight matrix is then "orthogonalised" by the released code's
prototype-separation procedure. By Property 1 the argmax output neuron is then the nearest prototype.
"""

from __future__ import annotations

from typing import Any, Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F

from toolkit.ops.kmeans import KMeansResult, kmeans


def row_normalise(x: torch.Tensor) -> torch.Tensor:
    """Per-row z-score (unbiased std) then L2 normalisation, as the released code does before k-means."""
    x = x.float()
    x = (x - x.mean(dim=1, keepdim=True)) / x.std(dim=1, keepdim=True).clamp_min(1e-12)
    return F.normalize(x, dim=1)


Normalise = Literal["zscore_l2", "l2", "none"]


def normalise_rows(x: torch.Tensor, how: Normalise = "zscore_l2") -> torch.Tensor:
    """Rows of `x` as k-means sees them: `row_normalise` (released code), L2 only, or unchanged ("none")."""
    if how == "zscore_l2":
        return row_normalise(x)
    if how == "l2":
        return F.normalize(x.float(), dim=1)
    if how == "none":
        return x.float()
    raise ValueError(f"unknown normalisation {how!r}")


Pick = Literal["inertia", "balanced"]


def kmeans_restarts(x: torch.Tensor, k: int, *, niter: int, nredo: int, seed: int, pick: Pick = "inertia",
                    tolerance: float = 0.01, sample: int | None = None) -> KMeansResult:
    """k-means of `x` (already normalised) with `nredo` restarts, one kept by `pick`:
    "inertia" = the lowest (the released code, faiss's own choice), "balanced" = of the restarts within `tolerance`
    (relative) of the lowest inertia, the one with the most even cluster sizes (largest size entropy).

    "balanced" assumes roughly equal clusters, the prior CDC's own entropy term w_en encodes. Why: on digits
    the restarts fall into a good mode and modes that merge two classes and split a third, with inertias
    a fraction of a percent apart, so inertia alone picks a merged mode on about half the seeds, while the
    merged modes have one cluster twice as large (benchmarks/RESULTS.md, "restart pick").
    `sample`: faiss's training sample per centroid (None: every point, as the released code's scikit-learn).
    """
    if pick == "inertia":
        return kmeans(x, k, niter=niter, nredo=nredo, seed=seed, sample_per_centroid=sample)
    runs = [kmeans(x, k, niter=niter, nredo=1, seed=seed + 7919 * r, sample_per_centroid=sample) for r in range(nredo)]
    return most_balanced(runs, k, tolerance)


def most_balanced(runs: list[KMeansResult], k: int, tolerance: float) -> KMeansResult:
    """Of `runs` within `tolerance` (relative) of the lowest inertia, the largest cluster-size entropy
    (ties: the lower inertia)."""
    best = min(r.inertia for r in runs)
    near = [r for r in runs if r.inertia <= best * (1 + tolerance) + 1e-12]

    def size_entropy(r: KMeansResult) -> float:
        p = np.bincount(np.asarray(r.labels), minlength=k) / len(r.labels)
        p = p[p > 0]
        return float(-(p * np.log(p)).sum())

    return max(near, key=lambda r: (size_entropy(r), -r.inertia))


def prototypes(x: torch.Tensor, k: int, *, niter: int, nredo: int, seed: int,
               normalise: Normalise = "zscore_l2", unit: bool = False, pick: Pick = "inertia",
               tolerance: float = 0.01, sample: int | None = None) -> torch.Tensor:
    """k centroids of normalised `x` (k-means++, `nredo` restarts kept by `pick`), as a float tensor on x's
    device; `unit`: each centroid scaled to unit L2 norm."""
    result = kmeans_restarts(normalise_rows(x, normalise), k, niter=niter, nredo=nredo, seed=seed, pick=pick,
                             tolerance=tolerance, sample=sample)
    centroids = torch.as_tensor(result.centroids, device=x.device)
    return F.normalize(centroids, dim=1) if unit else centroids


def group_means(x: torch.Tensor, by: torch.Tensor, k: int, *, niter: int, nredo: int, seed: int,
                normalise: Normalise = "zscore_l2", unit: bool = False, pick: Pick = "inertia",
                tolerance: float = 0.01, sample: int | None = None) -> torch.Tensor:
    """Means of normalised `x` over the k clusters of a k-means on row-normalised `by` (same rows).

    A label-free alternative to k-means on `x` itself: the CDC head's last layer then carries the
    feature-space partition into the hidden space instead of re-clustering the hidden activations.
    """
    result = kmeans_restarts(row_normalise(by), k, niter=niter, nredo=nredo, seed=seed, pick=pick, tolerance=tolerance,
                             sample=sample)
    return label_means(x, torch.as_tensor(result.labels), k, normalise=normalise, unit=unit)


def label_means(x: torch.Tensor, labels: torch.Tensor, k: int, *, normalise: Normalise = "zscore_l2",
                unit: bool = False) -> torch.Tensor:
    """Means of normalised `x` over the k groups of `labels` (one per row; an empty group gives a zero row)."""
    labels = labels.to(device=x.device, dtype=torch.long)
    xn = normalise_rows(x, normalise)
    sums = torch.zeros(k, xn.shape[1], device=x.device).index_add_(0, labels, xn)
    counts = torch.bincount(labels, minlength=k).clamp_min(1).to(xn.dtype)
    means = sums / counts[:, None]
    return F.normalize(means, dim=1) if unit else means


def separate(weights: torch.Tensor, steps: int = 2000, scale: float = 5.0, lr: float = 0.1, *,
             resume: dict[str, Any] | None = None,
             checkpoint: Callable[[dict[str, Any]], None] | None = None) -> torch.Tensor:
    """Push prototypes apart: CE over scaled cosine logits between ReLU(Z_i) and W_j, target j = i.

    SGD (momentum 0.9, weight decay 1e-4) with cosine decay over `steps`; returns W (not normalised).
    This is the released code's meaning of "orthogonalise"; rows end up close to mutually orthogonal.
    `checkpoint(state)` gets, after every step, what `resume=state` needs to continue exactly (the
    caller decides which to keep: thousands of steps on large heads take a while on a CPU).
    """
    if steps <= 0:
        return weights.clone()
    with torch.enable_grad():
        z = weights.detach().clone().float().requires_grad_(True)
        w = weights.detach().clone().float().requires_grad_(True)
        opt = torch.optim.SGD([z, w], lr=lr, momentum=0.9, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=0.0)
        start = 0
        if resume is not None:
            with torch.no_grad():
                z.copy_(resume["z"])
                w.copy_(resume["w"])
            opt.load_state_dict(resume["optimizer"])
            sched.load_state_dict(resume["scheduler"])
            start = int(resume["step"])
        target = torch.arange(len(weights), device=weights.device)
        for step in range(start, steps):
            logits = scale * F.normalize(F.relu(z), dim=1) @ F.normalize(w, dim=1).t()
            loss = F.cross_entropy(logits, target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if checkpoint is not None:
                checkpoint({"step": step + 1, "z": z.detach(), "w": w.detach(), "optimizer": opt.state_dict(),
                            "scheduler": sched.state_dict()})
    return w.detach()

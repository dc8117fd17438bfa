"""GCC's three Stage II losses (Sections 3.3.1-3.3.2, Eqs. 9-11): L_d, L_cwm, L_ml.

Conventions, checked against hand-computed values in tests/plugins/gcc/test_gcc_losses.py: biased per-cluster
MMD summed over clusters present in both batches, cosine L_cwm on generated features only, and the
zero-margin squared hinge L_ml on the head's outputs for generated images.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F


def _wide(x: torch.Tensor) -> torch.Tensor:
    """At least float32 (bf16 features from autocast), float64 kept for exact tests."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def gaussian_kernels(real: torch.Tensor, fake: torch.Tensor, kernel_num: int = 5, kernel_mul: float = 2.0,
                     bandwidth: float | None = None, reduce: Literal["sum", "mean"] = "sum") -> torch.Tensor:
    """Multi-bandwidth Gaussian kernel matrix over concat(real, fake) (DAN-style).

    The base bandwidth is the mean off-diagonal squared distance, detached (or `bandwidth` when
    given), spread over `kernel_num` multiples of `kernel_mul` centred on it.
    """
    z = _wide(torch.cat([real, fake]))
    d = torch.cdist(z, z).pow(2)
    n = z.shape[0]
    if bandwidth is None:
        bw = (d.detach().sum() / max(n * n - n, 1)).clamp_min(1e-12)
    else:
        bw = torch.tensor(float(bandwidth), device=z.device)
    bw = bw / (kernel_mul ** (kernel_num // 2))
    kmat = sum(torch.exp(-d / (bw * kernel_mul**m)) for m in range(kernel_num))
    return kmat / kernel_num if reduce == "mean" else kmat


def mmd_per_cluster(real: torch.Tensor, fake: torch.Tensor, labels_real: torch.Tensor, labels_fake: torch.Tensor,
                    num_clusters: int, kernel: torch.Tensor) -> torch.Tensor:
    """L_d (Eq. 9): sum over clusters in both batches of d_r + d_g - 2 d_rg, biased estimator.

    `kernel` is the (B_r + B_g) square kernel matrix over concat(real, fake).
    """
    b = real.shape[0]
    mr = F.one_hot(labels_real, num_clusters).to(kernel.dtype)
    mg = F.one_hot(labels_fake, num_clusters).to(kernel.dtype)
    nr, ng = mr.sum(0), mg.sum(0)
    present = (nr > 0) & (ng > 0)
    if not bool(present.any()):
        return kernel.sum() * 0.0
    kr, kg, krg = kernel[:b, :b], kernel[b:, b:], kernel[:b, b:]
    dr = (mr * (kr @ mr)).sum(0) / nr.clamp_min(1) ** 2
    dg = (mg * (kg @ mg)).sum(0) / ng.clamp_min(1) ** 2
    drg = (mr * (krg @ mg)).sum(0) / (nr * ng).clamp_min(1)
    return (dr + dg - 2 * drg)[present].sum()


def loss_d(real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor, num_clusters: int, *,
           labels_fake: torch.Tensor | None = None, kernel_num: int = 5, kernel_mul: float = 2.0,
           bandwidth: float | None = None, reduce: Literal["sum", "mean"] = "sum", l2norm: bool = False) -> torch.Tensor:
    """Category-wise centre calibration in RKHS between real and generated features."""
    if l2norm:
        real, fake = F.normalize(real, dim=1), F.normalize(fake, dim=1)
    kernel = gaussian_kernels(real, fake, kernel_num, kernel_mul, bandwidth, reduce)
    return mmd_per_cluster(real, fake, labels, labels if labels_fake is None else labels_fake, num_clusters, kernel)


def loss_cwm(fake: torch.Tensor, labels: torch.Tensor, exclude_diag: bool = False) -> torch.Tensor:
    """L_cwm (Eq. 10): mean cosine similarity between clusters minus within clusters (generated only)."""
    z = F.normalize(_wide(fake), dim=1)
    sim = z @ z.T
    same = labels[:, None] == labels[None, :]
    diff = ~same
    if exclude_diag:
        same = same & ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    out = sim.sum() * 0.0
    if bool(diff.any()):
        out = out + sim[diff].mean()
    if bool(same.any()):
        out = out - sim[same].mean()
    return out


def loss_ml(scores: torch.Tensor, labels: torch.Tensor, on: Literal["logits", "probs"] = "logits",
            reduction: Literal["mean", "sum"] = "mean") -> torch.Tensor:
    """L_ml (Eq. 11): squared zero-margin hinge on every cluster that beats the conditioning one."""
    p = _wide(scores).softmax(1) if on == "probs" else _wide(scores)
    target = p.gather(1, labels[:, None])
    per = (p - target).clamp_min(0).pow(2).sum(1)
    return per.sum() if reduction == "sum" else per.mean()

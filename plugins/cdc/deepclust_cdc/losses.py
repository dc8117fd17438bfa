"""CDC's calibration-head losses: mini-cluster soft targets, L_cal and L_en (Section 3.2, Eqs. 2-4)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def minicluster_targets(probs: torch.Tensor, labels: torch.Tensor, num_miniclusters: int) -> torch.Tensor:
    """Each row's target is the mean of `probs` over its mini-cluster (q_k of the paper), [B, C].

    Averaging over a mini-cluster leaves a confident, pure region unchanged and flattens one that
    straddles a decision boundary: that is where the calibration penalty comes from.
    """
    labels = labels.to(probs.device).long()
    sums = torch.zeros(num_miniclusters, probs.shape[1], device=probs.device, dtype=probs.dtype)
    sums.index_add_(0, labels, probs)
    counts = torch.bincount(labels, minlength=num_miniclusters).clamp_min(1).to(probs.dtype)
    return (sums / counts[:, None])[labels]


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """L_cal: -(1/B) sum_i q_i . log softmax(logits_i)."""
    return -(targets * F.log_softmax(logits.float(), dim=1)).sum(dim=1).mean()


def negative_entropy(logits: torch.Tensor, per_class_mean: bool = False) -> torch.Tensor:
    """L_en: sum_j pbar_j log pbar_j of the batch-mean prediction (minimising it spreads the clusters).

    The released code sums over classes (default); the paper's Eq. 3 also divides by C (`per_class_mean`).
    """
    pbar = F.softmax(logits.float(), dim=1).mean(dim=0)
    value = (pbar * torch.log(pbar.clamp_min(1e-12))).sum()
    return value / pbar.numel() if per_class_mean else value

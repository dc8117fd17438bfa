"""SPICE reliable pseudo-labeling (Eqs. 6-7): a sample keeps its stage-2 label only when its
embedding neighbours agree with it; the released code adds a confidence filter and class balancing."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from toolkit.ops.knn import knn

if TYPE_CHECKING:
    import torch


def consistency_ratio(neighbors: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Eq. (6): share of each row's neighbours (indices [N, Ns]) whose label equals the row's own."""
    labels = np.asarray(labels)
    return (labels[neighbors] == labels[:, None]).mean(axis=1)


def reliable_mask(ratio: np.ndarray, confidence: np.ndarray, labels: np.ndarray, *, threshold: float,
                  strict: bool, min_confidence: float, balance: bool, rng: np.random.Generator) -> np.ndarray:
    """Eq. (7) (`strict`: r > lambda, paper) or r >= lambda (code); confidence > `min_confidence`
    (0 disables; code 0.99); with `balance` each cluster's reliable set is randomly cut to the size of
    the smallest non-empty one (code: the smallest one)."""
    keep = ratio > threshold if strict else ratio >= threshold
    if min_confidence > 0:
        keep &= np.asarray(confidence) > min_confidence
    if balance and keep.any():
        labels = np.asarray(labels)
        clusters = np.unique(labels[keep])
        size = min(int((labels[keep] == c).sum()) for c in clusters)
        balanced = np.zeros_like(keep)
        for c in clusters:
            members = np.flatnonzero(keep & (labels == c))
            balanced[rng.choice(members, size=size, replace=False)] = True
        keep = balanced
    return keep


def neighbours(features: np.ndarray | torch.Tensor, num_neighbors: int, include_self: bool) -> np.ndarray:
    """Indices [N, Ns] of each sample's nearest samples by cosine similarity (faiss, exact; on the GPU for
    CUDA tensors when faiss-gpu is installed).
    With `include_self` the sample counts among its own Ns neighbours (released code)."""
    n = len(features)
    k = min(num_neighbors, n if include_self else n - 1)
    return knn(features, k, metric="cosine", exclude_self=not include_self)[1]

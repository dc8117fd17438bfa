"""Cluster-to-class matching: contingency tables and the one-to-one Hungarian assignment."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


def _labels(a: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.equal(np.mod(arr, 1), 0)):
            raise ValueError(f"{name} must hold integer labels")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and arr.min() < 0:
        raise ValueError(f"{name} must hold non-negative labels")
    return arr


def contingency(
    pred: np.ndarray, target: np.ndarray, n_pred: int | None = None, n_true: int | None = None
) -> np.ndarray:
    """Counts [n_pred, n_true]: entry (i, j) = how many samples are in cluster i and class j. O(N)."""
    p, t = _labels(pred, "pred"), _labels(target, "target")
    if p.shape != t.shape:
        raise ValueError(f"pred and target differ in length: {p.size} vs {t.size}")
    if n_pred is None:
        n_pred = int(p.max()) + 1 if p.size else 0
    if n_true is None:
        n_true = int(t.max()) + 1 if t.size else 0
    if p.size and (p.max() >= n_pred or t.max() >= n_true):
        raise ValueError(f"labels exceed table size n_pred={n_pred}, n_true={n_true}")
    counts = np.bincount(p * n_true + t, minlength=n_pred * n_true)
    return counts.reshape(n_pred, n_true)


def hungarian_map(
    pred: np.ndarray, target: np.ndarray, n_pred: int | None = None, n_true: int | None = None
) -> np.ndarray:
    """For each cluster, the class it is matched to (one-to-one, most samples agreeing), else -1.

    With more clusters than classes the surplus clusters get -1; with fewer, some classes are unused.
    """
    table = contingency(pred, target, n_pred, n_true)
    mapping = np.full(table.shape[0], -1, dtype=np.int64)
    rows, cols = linear_sum_assignment(table, maximize=True)
    mapping[rows] = cols
    return mapping

"""`[data] long_tail = R`: a long-tailed version of any labelled data set, for imbalance benchmarks.

Class c of C (classes ordered by index) keeps round(n_c * R^(-c/(C-1))) of its n_c images, at least 1,
so class 0 keeps all and class C-1 keeps n_c / R. Which images are kept comes from a fixed seed, NOT the
run seed: every run seed sees the same subset, so method comparisons across seeds are on the same data.
"""

from __future__ import annotations

import numpy as np

from toolkit.data.base import ImageData
from toolkit.errors import UserError

#: Seed of the subset choice; the run seed is deliberately not mixed in (see the module docstring).
LONG_TAIL_SEED = 1_729


class LongTailError(UserError, ValueError):
    """`long_tail` asked of a data set without labels: a recipe mistake, printed as one line."""


def long_tail_counts(counts: np.ndarray, ratio: float) -> np.ndarray:
    """Images kept per class: round(n_c * ratio^(-c/(C-1))), at least 1 where the class has any."""
    num_classes = len(counts)
    keep = np.zeros(num_classes, dtype=np.int64)
    for c, n in enumerate(counts):
        exponent = c / (num_classes - 1) if num_classes > 1 else 0.0
        keep[c] = max(1, round(int(n) * ratio ** (-exponent))) if n > 0 else 0
    return keep


def make_long_tailed(data: ImageData, ratio: float, part: int = 0) -> ImageData:
    """Subset of `data` with long-tailed class counts; image order is kept. `part` tells apart the
    shipped train (0) and test (1) parts so their choices are independent yet fixed."""
    if data.labels is None:
        raise LongTailError(f"`[data] long_tail` needs labels, but data set {data.name!r} has none "
                            "(remove long_tail, or use a labelled data set / labels = true)")
    num_classes = data.num_classes or 0
    counts = np.bincount(data.labels, minlength=num_classes)
    keep = long_tail_counts(counts, ratio)
    rng = np.random.default_rng([LONG_TAIL_SEED, part])
    chosen = [rng.choice(np.flatnonzero(data.labels == c), size=int(k), replace=False)
              for c, k in enumerate(keep) if k > 0]
    index = np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)
    return data.subset(index)

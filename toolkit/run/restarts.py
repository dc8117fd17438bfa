"""The default label-free choice among head-init restarts: consensus.

Several methods land in one of a few partitions depending on the seed (k-means modes, balanced but wrong
splits). The restart whose partition agrees most, on average, with all the others is the "medoid" of the
restarts: a mode that only one unlucky seed finds does not win, and no label is needed to say so.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import adjusted_rand_score


def consensus_scores(partitions: list[np.ndarray]) -> list[float]:
    """For each partition, its mean adjusted Rand index with every other one (higher: more typical)."""
    n = len(partitions)
    if n < 2:
        return [1.0] * n
    agree = np.eye(n)
    for i in range(n):
        for j in range(i + 1, n):
            agree[i, j] = agree[j, i] = adjusted_rand_score(partitions[i], partitions[j])
    return [float((agree[i].sum() - 1.0) / (n - 1)) for i in range(n)]

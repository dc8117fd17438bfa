"""The head-init partition chosen without labels (toolkit/ops/partition.py): every candidate is scored, the
highest silhouette wins, and the silhouette itself ranks a right partition above a wrong one."""

from __future__ import annotations

import numpy as np

from toolkit.metrics import cluster_acc
import pytest

import toolkit.ops.partition as partition
from toolkit.ops.partition import CANDIDATES, KMEANS_MARGIN, best_partition, silhouette


def _blobs(sizes: tuple[int, ...], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Tight clusters around orthogonal directions in 16 dimensions (long-tailed when the sizes differ)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(sizes)), sizes)
    centres = np.eye(16)[: len(sizes)] * 5
    return (centres[labels] + rng.normal(0, 0.6, (len(labels), 16))).astype(np.float32), labels


def test_silhouette_ranks_the_true_partition_above_a_split_one() -> None:
    x, labels = _blobs((300, 40, 40))
    split = labels.copy()
    split[labels == 0] = np.where(np.arange((labels == 0).sum()) % 2 == 0, 0, 1)  # cut the big class in two
    split[labels == 1] = 1  # and merge a small one into a half
    assert silhouette(x, labels) > silhouette(x, split) + 0.1
    assert silhouette(x, np.zeros(len(x), dtype=np.int64)) == -1.0  # one cluster: no silhouette


def test_best_partition_scores_every_candidate_and_keeps_the_highest() -> None:
    x, labels = _blobs((300, 40, 40))
    name, found, scores = best_partition(x, 3, seed=0)
    assert set(scores) == set(CANDIDATES)
    assert name == max(scores, key=lambda n: scores[n] + (KMEANS_MARGIN if n == "kmeans" else 0.0))
    assert found.shape == (len(x),) and cluster_acc(found, labels) > 0.95
    again = best_partition(x, 3, seed=0)
    assert again[0] == name and np.array_equal(again[1], found)  # same seed, same choice
    small, _ = _blobs((8, 6, 6))
    assert set(best_partition(small, 3, seed=0)[2]) == {"kmeans", "spectral-10", "merged"}  # 30 > N


@pytest.mark.parametrize(("merged_lead", "picked"), [(KMEANS_MARGIN / 2, "kmeans"), (KMEANS_MARGIN * 2, "merged")])
def test_kmeans_is_kept_unless_another_partition_is_clearly_better(merged_lead: float, picked: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    x, _ = _blobs((30, 30, 30))
    found = {name: np.full(len(x), i, dtype=np.int64) for i, name in enumerate(CANDIDATES)}  # told apart by value
    silhouettes = {"kmeans": 0.30, "spectral-10": 0.20, "spectral-30": 0.25, "merged": 0.30 + merged_lead}
    monkeypatch.setattr(partition, "candidates", lambda *a, **k: found)
    monkeypatch.setattr(partition, "silhouette", lambda f, labels, seed=0: silhouettes[list(CANDIDATES)[labels[0]]])
    name, labels, scores = best_partition(x, 3)
    assert name == picked and labels is found[picked] and scores == silhouettes

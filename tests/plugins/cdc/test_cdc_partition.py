"""CDC's prototype head-init with `partition = "auto"`: on a long tail where the C-way k-means cuts the wide
class, the last layer built from the partition the silhouette picks (merged over-clustering here) keeps the
tail apart; the pick is logged."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from deepclust_cdc.head_init import PrototypeHeadInit
from toolkit.metrics import cluster_acc
from toolkit.nn.heads import ClusterHead


def _long_tail_16d(seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """One wide class of 600 points and three tight classes of 20 on a 3-D sphere, rotated into 16 dimensions."""
    rng = np.random.default_rng(seed)
    directions = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [-1, -1, 0]], dtype=np.float64)
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    sizes, spreads = (600, 20, 20, 20), (0.45, 0.08, 0.08, 0.08)
    points = np.concatenate([d + rng.normal(0, s, (n, 3)) for d, n, s in zip(directions, sizes, spreads)])
    rotation, _ = np.linalg.qr(rng.normal(size=(16, 3)))
    feats = points @ rotation.T + 0.01 * rng.normal(size=(len(points), 16))
    return torch.as_tensor(feats, dtype=torch.float32), np.repeat(np.arange(4), sizes)


def _accuracy(hidden: int | None, partition: str) -> tuple[float, list[dict]]:
    feats, labels = _long_tail_16d()
    logged: list[dict] = []
    ctx = SimpleNamespace(num_clusters=4, seed=0, build_head=lambda d: ClusterHead(d, 4, hidden),
                          resume_point=lambda stage: None, save_point=lambda *a, **kw: None, warn=print,
                          log_epoch=lambda stage, epoch, metrics: logged.append(metrics))
    options = PrototypeHeadInit.Options(nredo=2, ortho_steps=100, partition=partition, last_init="feature_kmeans")
    head = PrototypeHeadInit(options).init_head(ctx, None, feats, None)  # type: ignore[arg-type]
    head.eval()
    with torch.no_grad():
        return cluster_acc(head(feats).argmax(1).numpy(), labels), logged


@pytest.mark.filterwarnings("ignore:Graph is not fully connected")
@pytest.mark.parametrize("hidden", [32, None])
def test_auto_partition_keeps_the_long_tail_kmeans_cuts(hidden: int | None) -> None:
    cut, nothing = _accuracy(hidden, "kmeans")
    kept, logged = _accuracy(hidden, "auto")
    assert nothing == []  # the paper's path computes no other partition
    assert cut < 0.65 and kept > cut + 0.15
    assert len(logged) == 1 and logged[0]["partition_choice"] == 3.0  # merged, index in CANDIDATES
    assert logged[0]["silhouette_merged"] > logged[0]["silhouette_kmeans"] + 0.01

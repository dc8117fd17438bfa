"""`threshold` selection with `class_balance = "estimated"`: selected clusters weigh their estimated share of
the data (the model's own argmax counts), floored at 1/max_ratio of the largest; sizes are logged each epoch."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import torch

from toolkit.api import Batch, EpochState
from toolkit.testing import find_plugin, run_plugin


def _probs(labels: list[int], k: int, confidence: float = 0.99) -> torch.Tensor:
    rest = (1 - confidence) / (k - 1)
    out = torch.full((len(labels), k), rest)
    out[torch.arange(len(labels)), torch.tensor(labels)] = confidence
    return out


class _Ctx(SimpleNamespace):
    def log_epoch(self, stage: str, epoch: int, metrics: dict[str, float]) -> None:
        self.logged = (stage, epoch, metrics)


def test_weights_follow_the_estimated_sizes_with_a_floor() -> None:
    cls = find_plugin("selection", "threshold")
    plugin = cls(cls.Options(threshold=0.9, class_balance="estimated", max_ratio=50))
    sizes = [1000, 100, 1]  # the data set as the model sees it: a long tail, cluster 2 nearly starved
    everything = _probs([c for c, n in enumerate(sizes) for _ in range(n)], 3)
    ctx = _Ctx(device=torch.device("cpu"))
    plugin.on_epoch_start(ctx, EpochState(epoch=1, total_epochs=5, features=torch.zeros(len(everything), 2),
                                          probs=everything, confidence=everything))
    assert ctx.logged[0] == "self_label" and ctx.logged[2]["estimated_size_0"] == 1000
    assert ctx.logged[2]["estimated_size_2"] == 1 and ctx.logged[2]["estimated_size_ratio"] == 1000
    # a batch where every cluster is selected equally often: weights restore the estimated shares
    batch_labels = [0] * 10 + [1] * 10 + [2] * 10
    empty = torch.zeros(30, 1)
    batch = Batch(torch.arange(30), 1, 0, empty, empty, empty, empty, empty, empty)  # select reads the confidence
    sel = plugin.select(batch, _probs(batch_labels, 3))
    weights = sel.weights
    assert weights is not None and torch.isclose(weights.sum(), torch.tensor(30.0))
    per_cluster = torch.stack([weights[sel.labels == c].sum() for c in range(3)]) / 30
    floored = torch.tensor([1000.0, 100.0, 20.0])  # the smallest is lifted to 1000 / 50
    assert torch.allclose(per_cluster, floored / floored.sum(), atol=1e-5)
    # SCAN's balance (true) gives every selected cluster the same weight instead
    scan = cls(cls.Options(threshold=0.9, class_balance=True)).select(batch, _probs(batch_labels, 3))
    assert torch.allclose(scan.weights, torch.ones(30))


def test_a_run_logs_the_estimated_sizes_each_epoch(tmp_path: Path) -> None:
    result = run_plugin("selection", "threshold", {"threshold": 0.5, "class_balance": "estimated"},
                        tmp_path=tmp_path, train={"epochs": 3, "batch_size": 32})
    ratios = result.metric_history("estimated_size_ratio")
    assert len(ratios) == 3 and all(r >= 1 for r in ratios)
    sizes = [result.metric_history(f"estimated_size_{c}")[-1] for c in range(3)]
    assert sum(sizes) == 96

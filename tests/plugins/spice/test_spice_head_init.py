"""SPICE stage 2 in-process on tiny synthetic blobs: the returned head is the lowest-loss (epoch, head)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deepclust_spice.head_init import Options, SpicePrototypeHeadInit
from deepclust_spice.prototype import head_score
from toolkit.api.context import RunContext, UnlabeledImages, Views
from toolkit.data.views import BatchView
from toolkit.run.events import EventBus, Observer
from toolkit.nn.heads import ClusterHead


class Record(Observer):
    def __init__(self) -> None:
        self.epochs: list[dict] = []
        self.published: list[tuple] = []

    def on_epoch_end(self, *, stage: str, epoch: int, metrics: dict, state: object) -> None:
        if stage == "head_init" and "head_loss_min" in metrics:
            self.epochs.append(metrics)

    def on_pseudo_labels(self, *, stage: str, epoch: int, name: str, index, labels) -> None:  # noqa: ANN001
        self.published.append((stage, epoch, name, len(index)))


def _context(record: Record, k: int = 3) -> tuple[RunContext, torch.Tensor]:
    """k blobs of 8x8 grayscale 'images'; the backbone is a flatten, so features are the pixels."""
    rng = np.random.default_rng(0)
    centres = rng.integers(0, 256, size=(k, 1, 8, 8))
    truth = np.repeat(np.arange(k), 60)
    images = np.clip(centres[truth] + rng.normal(0, 25, size=(len(truth), 1, 8, 8)), 0, 255).astype(np.uint8)
    data = UnlabeledImages(torch.as_tensor(images), "blobs")
    raw = BatchView(None, [0.5], [0.25])
    ctx = RunContext(data, k, torch.device("cpu"), 0, Views(raw, raw, raw), EventBus([record]),
                     build_backbone=lambda: nn.Flatten(), build_head=lambda d: ClusterHead(d, k), batch_size=64)
    return ctx, torch.as_tensor(truth)


def test_returned_head_is_the_lowest_loss_head_over_all_epochs() -> None:
    record = Record()
    ctx, truth = _context(record)
    backbone = nn.Flatten()
    features = ctx.encode(backbone)
    plugin = SpicePrototypeHeadInit(Options(heads=4, epochs=3, batch_size=90, num_repeat=2, sub_batch_size=32))
    head = plugin.init_head(ctx, backbone, features, None)
    assert len(record.epochs) == 3
    losses = [m["head_loss_min"] for m in record.epochs]
    assert record.epochs[-1]["kept_loss"] == pytest.approx(min(losses))
    # the head that came back scores exactly the kept loss (it is not the last epoch's or head 0's)
    head.eval()
    with torch.no_grad():
        score = head_score(head(features), F.normalize(features, dim=1))[0]
    assert score == pytest.approx(min(losses), abs=1e-5)
    # E-batches of 90 give 30 pairs per cluster, two batches per epoch: 180 labelled pairs per head
    assert all(m["prototype_labels"] == 180 for m in record.epochs)
    assert [p[:3] for p in record.published] == [("head_init", e, "prototype_label") for e in (1, 2, 3)]
    # three well-separated blobs: the kept head clusters them almost perfectly
    with torch.no_grad():
        pred = head(features).argmax(1)
    from toolkit.metrics import cluster_acc
    assert cluster_acc(pred.numpy(), truth.numpy()) > 0.95


class CountingFlatten(nn.Flatten):
    """The frozen 'backbone': a flatten that counts the images it encoded."""

    def __init__(self) -> None:
        super().__init__()
        self.images = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.images += len(x)
        return super().forward(x)


def test_cached_views_encode_once_and_train_the_same_head() -> None:
    """With views that have no randomness, the cached copies are the very features every E-batch would encode:
    the kept head must be identical, while the backbone encodes 2 views x 2 copies instead of (1 + num_repeat)
    views per epoch."""
    heads = {}
    for copies in (0, 2):
        ctx, _ = _context(Record())
        backbone = CountingFlatten()
        features = ctx.encode(nn.Flatten())
        plugin = SpicePrototypeHeadInit(Options(heads=3, epochs=3, batch_size=90, num_repeat=2, sub_batch_size=32,
                                                cached_views=copies))
        heads[copies] = (plugin.init_head(ctx, backbone, features, None), backbone.images)
    assert heads[0][1] == 3 * (1 + 2) * 180 and heads[2][1] == 2 * 2 * 180
    for a, b in zip(heads[0][0].state_dict().values(), heads[2][0].state_dict().values()):
        assert torch.equal(a, b)

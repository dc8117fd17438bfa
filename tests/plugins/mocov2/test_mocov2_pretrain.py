"""Pretrain `mocov2`: the InfoNCE/queue pieces by hand, and a couple of real training steps."""

from __future__ import annotations

import math

import pytest
import torch

from deepclust_mocov2.loss import KeyQueue, moco_infonce
from deepclust_mocov2.plugin import MoCoV2Pretrain, lr_at
from toolkit.api.context import RunContext, UnlabeledImages, Views
from toolkit.data.views import AugmentConfig, BatchView
from toolkit.run.events import EventBus
from toolkit.nn.backbones import build_backbone
from toolkit.nn.config import BackboneConfig


def test_infonce_by_hand() -> None:
    q = torch.tensor([[1.0, 0.0, 0.0]])
    queue = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])  # orthogonal negatives: logit 0
    t = 0.5
    expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + 2))
    assert moco_infonce(q, q * 3, queue, t).item() == pytest.approx(expected)  # keys are normalised


def test_queue_is_fifo_and_wraps() -> None:
    queue = KeyQueue(4, 2, torch.device("cpu"), torch.Generator().manual_seed(0))
    queue.push(torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]]))
    assert queue.ptr == 3 and torch.equal(queue.keys[1], torch.tensor([0.0, 1.0]))
    queue.push(torch.tensor([[0.0, -1.0], [-1.0, 0.0]]))
    assert queue.ptr == 1 and torch.equal(queue.keys[3], torch.tensor([0.0, -1.0]))
    assert torch.equal(queue.keys[0], torch.tensor([-1.0, 0.0]))


def test_warmup_then_cosine() -> None:
    o = MoCoV2Pretrain.Options(lr=0.5, batch_size=512, warmup_epochs=1, epochs=3)
    assert lr_at(o, 0, 30, 10) == pytest.approx(0.1)  # base 0.5 x 512/256 = 1.0, step 1 of 10 warmup
    assert lr_at(o, 10, 30, 10) == pytest.approx(1.0)
    assert lr_at(o, 30, 30, 10) == pytest.approx(0.0, abs=1e-9)


def test_two_epochs_train_the_backbone() -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (64, 1, 8, 8), dtype=torch.uint8, generator=g)
    aug = AugmentConfig(translate=0.1, noise=0.1)
    views = Views(BatchView(None, [0.5], [0.25]), BatchView(aug, [0.5], [0.25]), BatchView(aug, [0.5], [0.25]))
    cfg = BackboneConfig(name="mlp", hidden_dims=[32, 16])
    logged: list[float] = []
    bus = EventBus([])
    bus.emit = lambda name, **kw: logged.append(kw["metrics"]["loss"]) if name == "on_epoch_end" else None  # type: ignore[method-assign]
    ctx = RunContext(UnlabeledImages(images, "random"), 4, torch.device("cpu"), 0, views, bus,
                     lambda: build_backbone(cfg, 1, (8, 8)), lambda d: torch.nn.Linear(d, 4))
    backbone = ctx.build_backbone()
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    plugin = MoCoV2Pretrain(MoCoV2Pretrain.Options(epochs=2, batch_size=16, queue_size=40, warmup_epochs=1,
                                                   projection_hidden=32, projection_dim=8, lr=0.1))
    result = plugin.pretrain(ctx, backbone)
    assert result.backbone is backbone and len(logged) == 2 and all(math.isfinite(v) for v in logged)
    assert not torch.equal(backbone.state_dict()["net.1.weight"], before["net.1.weight"])
    assert logged[0] > 0 and result.metrics["loss"] == logged[-1]

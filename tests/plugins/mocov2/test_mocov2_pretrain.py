"""Pretrain `mocov2`: the InfoNCE/queue pieces by hand, and a couple of real training steps."""

from __future__ import annotations

import math

import pytest
import torch

from deepclust_mocov2.loss import KeyQueue, moco_infonce
from deepclust_mocov2.plugin import MoCoV2Pretrain, encode_pair, lr_at
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


def test_batch_norm_modes_normalise_the_rows_they_say() -> None:
    """joint: one batch of 2B; per_view: each view alone; shuffle: groups of a permutation, rows put back."""
    torch.manual_seed(0)
    bn = torch.nn.BatchNorm1d(3, affine=False)
    x1, x2 = torch.randn(8, 3) * 3 + 1, torch.randn(8, 3)

    def normed(x: torch.Tensor) -> torch.Tensor:
        return (x - x.mean(0)) / (x.var(0, unbiased=False) + bn.eps).sqrt()

    z1, z2 = encode_pair(bn, x1, x2, "joint", 4)
    assert torch.allclose(torch.cat([z1, z2]), normed(torch.cat([x1, x2])), atol=1e-5)
    z1, z2 = encode_pair(bn, x1, x2, "per_view", 4)
    assert torch.allclose(z1, normed(x1), atol=1e-5) and torch.allclose(z2, normed(x2), atol=1e-5)
    z1, _ = encode_pair(bn, x1, x2, "shuffle", 4)  # query side: contiguous groups of 2
    assert torch.allclose(z1, torch.cat([normed(part) for part in x1.chunk(4)]), atol=1e-5)
    gen = torch.Generator().manual_seed(3)
    order = torch.randperm(8, generator=torch.Generator().manual_seed(3))
    k1, _ = encode_pair(bn, x1, x2, "shuffle", 4, gen)  # key side: groups of the permuted rows
    expected = torch.empty_like(x1)
    for part in order.chunk(4):
        expected[part] = normed(x1[part])
    assert torch.allclose(k1, expected, atol=1e-5)
    assert not torch.allclose(k1, z1, atol=1e-3)  # a positive pair no longer shares its group's statistics
    linear = torch.nn.Linear(3, 2)  # without BatchNorm every mode is the same function of each row
    for mode in ("joint", "per_view", "shuffle"):
        assert torch.allclose(encode_pair(linear, x1, x2, mode, 4, torch.Generator())[0], linear(x1), atol=1e-6)


@pytest.mark.parametrize("mode", ["per_view", "shuffle"])
def test_two_epochs_train_the_backbone_with_each_batch_norm(mode: str) -> None:
    test_two_epochs_train_the_backbone(batch_norm=mode)


def test_two_epochs_train_the_backbone(**options: object) -> None:
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
                                                   projection_hidden=32, projection_dim=8, lr=0.1,
                                                   **options))  # type: ignore[arg-type]
    result = plugin.pretrain(ctx, backbone)
    assert result.backbone is backbone and len(logged) == 2 and all(math.isfinite(v) for v in logged)
    assert not torch.equal(backbone.state_dict()["net.1.weight"], before["net.1.weight"])
    assert logged[0] > 0 and result.metrics["loss"] == logged[-1]

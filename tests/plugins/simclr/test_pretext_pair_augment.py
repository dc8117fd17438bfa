"""[pretrain.augment]: a pretext's own pair augmentation replaces the [views.*] view it would otherwise use."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from deepclust_mocov2.plugin import MoCoV2Pretrain
from deepclust_simclr.plugin import SimCLRPretrain
from toolkit.api.context import RunContext, UnlabeledImages, Views
from toolkit.data.views import AugmentConfig, BatchView
from toolkit.run.events import EventBus
from toolkit.nn.backbones import build_backbone
from toolkit.nn.config import BackboneConfig

MILD = AugmentConfig(translate=0.05, noise=0.05)
WILD = AugmentConfig(degrees=30.0, translate=0.2, shear=20.0, noise=0.3)
PLUGINS = [
    (SimCLRPretrain, dict(epochs=1, batch_size=16, projection_hidden=16, projection_dim=8)),
    (MoCoV2Pretrain, dict(epochs=1, batch_size=16, queue_size=32, warmup_epochs=0, projection_hidden=16,
                          projection_dim=8, lr=0.1)),
]


def pretrained(plugin_cls: Any, options: dict[str, Any], strong: AugmentConfig) -> dict[str, torch.Tensor]:
    """One epoch of the pretext on fixed random 8x8 images, with [views.strong] = `strong`."""
    images = torch.randint(0, 256, (48, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    views = Views(BatchView(None, [0.5], [0.25]), BatchView(MILD, [0.5], [0.25]), BatchView(strong, [0.5], [0.25]))
    cfg = BackboneConfig(name="mlp", hidden_dims=[32, 16])
    ctx = RunContext(UnlabeledImages(images, "random"), 4, torch.device("cpu"), 0, views, EventBus([]),
                     lambda: build_backbone(cfg, 1, (8, 8)), lambda d: torch.nn.Linear(d, 4))
    torch.manual_seed(0)
    backbone = ctx.build_backbone()
    plugin_cls(plugin_cls.Options(**options)).pretrain(ctx, backbone)
    return backbone.state_dict()


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("plugin_cls, options", PLUGINS, ids=["simclr", "mocov2"])
def test_augment_replaces_the_strong_view(plugin_cls: Any, options: dict[str, Any]) -> None:
    via_view = pretrained(plugin_cls, options, strong=WILD)
    via_augment = pretrained(plugin_cls, {**options, "augment": WILD.model_dump()}, strong=MILD)
    assert same(via_view, via_augment), "augment = X must train exactly as [views.strong] = X"
    assert not same(via_view, pretrained(plugin_cls, options, strong=MILD)), "the view must matter at all"


def test_custom_view_normalises_like_the_raw_view() -> None:
    views = Views(BatchView(None, [0.3], [0.2]), BatchView(MILD, [0.5], [0.25]), BatchView(MILD, [0.5], [0.25]))
    custom = views.custom(AugmentConfig())  # no augmentation: exactly the raw view
    images = torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    assert torch.equal(custom(images), views.raw(images))

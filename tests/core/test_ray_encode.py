"""`[train] encode = "ray"`: a frozen backbone's raw-view features computed by Ray Data actors (a local Ray
instance here) are the local pass's, in order, through `ctx.encode` and `ctx.encode_copies`; augmented views
and rehearsals stay local; a run with it ends normally."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from toolkit.api.context import RunContext, UnlabeledImages, Views
from toolkit.api.step_cap import StepCap, activated
from toolkit.data.views import AugmentConfig, BatchView
from toolkit.recipe.loading import load_recipe
from toolkit.run.engine import Engine
from toolkit.run.events import EventBus
from toolkit.run.ray_encode import encode

from conftest import RECIPES

pytestmark = [pytest.mark.usefixtures("ray_local"), pytest.mark.xdist_group("ray")]  # one Ray instance, one worker


class Remote:
    """The Ray encoder, counting its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, *args: object) -> torch.Tensor:
        self.calls += 1
        return encode(*args)  # type: ignore[arg-type]


def _ctx(remote: Remote | None) -> RunContext:
    images = UnlabeledImages(torch.as_tensor(np.random.default_rng(0).integers(0, 256, (70, 3, 8, 8), dtype=np.uint8)),
                             "noise")
    raw = BatchView(None, [0.5] * 3, [0.25] * 3)
    weak = BatchView(AugmentConfig(degrees=10.0, noise=0.1), [0.5] * 3, [0.25] * 3)
    return RunContext(images, 3, torch.device("cpu"), 0, Views(raw, weak, weak), EventBus([]),
                      build_backbone=lambda: nn.Flatten(), build_head=lambda d: nn.Linear(d, 3), remote_encoder=remote)


def _backbone() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(256, 6))


def test_ray_features_are_the_local_ones_in_order() -> None:
    backbone = _backbone().train()  # eval mode is the encoder's business, as locally
    local = _ctx(None).encode(backbone, batch_size=16)
    remote = Remote()
    ctx = _ctx(remote)
    fanned = ctx.encode(backbone, batch_size=16)  # 70 rows in 5 blocks of up to 16
    assert remote.calls == 1 and fanned.shape == local.shape == (70, 6)
    assert torch.allclose(fanned, local, atol=1e-5)
    copies = ctx.encode_copies(backbone, "raw", 2, 1, batch_size=16)
    assert remote.calls == 2 and copies.shape == (2, 70, 6) and torch.allclose(copies[1], local, atol=1e-5)
    ctx.encode_copies(backbone, "weak", 2, 1, batch_size=16)  # draws: local
    with activated(StepCap(1)):
        ctx.encode(backbone, batch_size=16)  # a rehearsal cuts passes here
    assert remote.calls == 2 and backbone.training


def test_a_run_with_ray_encoding(tmp_path: Path, mlflow_store: str) -> None:
    settings = ['data.dataset="synthetic"', "data.num_samples=120", "data.num_classes=3", "data.synthetic_size=8",
                "data.synthetic_channels=1", "model.hidden_dims=[16]", "model.head_hidden_dim=16", "train.epochs=1",
                "pretrain.epochs=2", "head_init.epochs=2", "train.freeze_backbone=true", 'train.encode="ray"']
    summary = Engine(load_recipe(RECIPES / "baseline_digits.toml", settings), tmp_path / "run", device="cpu").run()
    assert 0.0 <= summary["acc"] <= 1.0

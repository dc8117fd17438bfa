"""`kmeans_pseudo_label` with `cached_views = M`: the frozen backbone encodes M augmented copies of every image
once, instead of one view per batch per epoch; the head it trains is as good."""

from __future__ import annotations

from pathlib import Path

import pytest

from toolkit.api.context import RunContext
from toolkit.recipe.loading import load_recipe
from toolkit.run.engine import Engine
from toolkit.run.events import Observer
from toolkit.track.tracker import MlflowTracker

from conftest import RECIPES

TINY = ["pretrain.epochs=5", "pretrain.batch_size=256", "head_init.epochs=8", "train.epochs=0",
        "model.hidden_dims=[64]",
        "head_init.partition=kmeans"]  # the partition choice is tested in test_head_partition.py


class HeadInitViews(Observer):
    """Counts the images whose augmented view was drawn while head-init ran; keeps the epoch-0 metrics."""

    def __init__(self) -> None:
        self.active, self.images, self.metrics = False, 0, {}

    def on_stage_start(self, *, stage: str, total: object) -> None:
        self.active = stage == "head_init"

    def on_stage_end(self, *, stage: str) -> None:
        self.active = False

    def on_epoch_end(self, *, stage: str, epoch: int, metrics: dict[str, float], state: object) -> None:
        if stage == "self_label" and epoch == 0:
            self.metrics = dict(metrics)


def _run(tmp_path: Path, copies: int, monkeypatch: pytest.MonkeyPatch, name: str = "") -> HeadInitViews:
    seen = HeadInitViews()
    real = RunContext.view

    def counted(self, name, index, generator=None):  # type: ignore[no-untyped-def]
        if seen.active:
            seen.images += len(index)
        return real(self, name, index, generator)

    monkeypatch.setattr(RunContext, "view", counted)
    recipe = load_recipe(RECIPES / "baseline.toml", [*TINY, f"head_init.cached_views={copies}"])
    seen.summary = Engine(recipe, tmp_path / f"c{copies}{name}", device="cpu", observers=[seen, MlflowTracker()]).run()
    return seen


def test_cached_views_encode_each_image_m_times(tmp_path: Path, mlflow_store: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOOLKIT_CACHE_DIR", str(tmp_path / "cache"))  # no copies from another test
    every_epoch = _run(tmp_path, 0, monkeypatch)
    cached = _run(tmp_path, 2, monkeypatch)
    n = 1797  # sklearn's digits; one raw pass of every image gives k-means its features
    assert every_epoch.images == n * (1 + 8)  # then one view per image per epoch
    assert cached.images == n * (1 + 2)  # then two copies of every image, whatever the number of epochs
    # the head trained on cached copies finds the digits about as well (far above chance, 0.1)
    assert cached.metrics["acc"] > 0.5 and abs(cached.metrics["acc"] - every_epoch.metrics["acc"]) < 0.15
    # a second run with the same frozen backbone reads the copies from the feature cache: no view encoded
    again = _run(tmp_path, 2, monkeypatch, name="-again")
    assert again.images == n  # only k-means' raw pass
    assert again.metrics["acc"] == cached.metrics["acc"]
    from mlflow.tracking import MlflowClient

    tags = [MlflowClient(mlflow_store).get_run(r.summary["mlflow_run_id"]).data.tags.get("feature_cache")
            for r in (cached, again)]
    assert tags == ["0 read, 1 encoded", "1 read, 0 encoded"]

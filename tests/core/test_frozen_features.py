"""`[train] cached_views` with a frozen backbone: self-labeling trains and evaluates the head on encoded copies
(no backbone forward per step or per evaluation), and with views that have no randomness the run ends where
the per-step forwards end."""

from __future__ import annotations

from pathlib import Path

import pytest

import toolkit.run.engine as engine_module
from toolkit.recipe.loading import load_recipe
from toolkit.run.engine import Engine
from toolkit.run.self_label import Models

from conftest import RECIPES

TINY = ["pretrain.epochs=5", "pretrain.batch_size=256", "head_init.epochs=5", "train.epochs=3",
        "model.hidden_dims=[64]", "train.freeze_backbone=true",
        "head_init.partition=kmeans"]  # the partition choice is tested in test_head_partition.py
#: Every augmentation off: the weak and strong views are the raw images, so cached copies equal fresh forwards.
NO_RANDOMNESS = ["views.weak.degrees=0", "views.weak.translate=0", "views.weak.noise=0", "views.strong.degrees=0",
                 "views.strong.translate=0", "views.strong.scale=[1.0, 1.0]", "views.strong.shear=0",
                 "views.strong.noise=0"]


def _run(tmp_path: Path, name: str, copies: int, monkeypatch: pytest.MonkeyPatch, extra: list[str]) -> tuple[dict, dict]:
    counts = {"forward_images": 0, "predict_with_features": 0, "predict_forward": 0}
    real_forward, real_predict = Models.forward, engine_module.predict

    def forward(self, images):  # type: ignore[no-untyped-def]
        counts["forward_images"] += len(images)
        return real_forward(self, images)

    def predict(*args, features=None, **kwargs):  # type: ignore[no-untyped-def]
        counts["predict_with_features" if features is not None else "predict_forward"] += 1
        return real_predict(*args, features=features, **kwargs)

    monkeypatch.setattr(Models, "forward", forward)
    monkeypatch.setattr(engine_module, "predict", predict)
    recipe = load_recipe(RECIPES / "baseline.toml", [*TINY, *extra, f"train.cached_views={copies}"])
    summary = Engine(recipe, tmp_path / name, device="cpu").run()
    monkeypatch.undo()
    return summary, counts


def test_head_trains_on_cached_copies_without_backbone_forwards(tmp_path: Path, mlflow_store: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOOLKIT_CACHE_DIR", str(tmp_path / "cache"))
    fresh, fresh_counts = _run(tmp_path, "fresh", 0, monkeypatch, NO_RANDOMNESS)
    monkeypatch.setenv("TOOLKIT_CACHE_DIR", str(tmp_path / "cache"))
    cached, cached_counts = _run(tmp_path, "cached", 2, monkeypatch, NO_RANDOMNESS)
    assert fresh_counts["forward_images"] > 0 and fresh_counts["predict_forward"] == 4  # epoch 0 and 3 epochs
    assert cached_counts == {"forward_images": 0, "predict_with_features": 4, "predict_forward": 0}
    # the same images through the same frozen weights: the same run, up to float summation order
    assert cached["acc"] == pytest.approx(fresh["acc"], abs=0.01)
    assert cached["nmi"] == pytest.approx(fresh["nmi"], abs=0.01)


def test_cached_views_need_a_frozen_backbone() -> None:
    from toolkit.errors import UserError

    with pytest.raises(UserError, match=r"\[train\] cached_views: needs freeze_backbone = true"):
        load_recipe(RECIPES / "baseline.toml", ["train.cached_views=2"])

"""recipes/frozen_features.toml through the engine and MLflow with a tiny randomly initialised timm model: the run
encodes its three views once (weak and strong copies, raw; head-init's raw features are the same entry, read
back by self-labeling), and a second run of the same backbone reads them all from the feature cache. (In process: a CLI start costs seconds of imports and adds nothing here.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import RECIPES

FAST = ["model.backbone=timm:test_resnet", "data.image_size=16", "train.epochs=2", "head_init.nredo=1",
        "head_init.ortho_steps=20", "train.cached_views=2", "calibration.kmeans_nredo=1"]


def test_frozen_features_recipe_reuses_its_encodings(tmp_path: Path, mlflow_store: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from toolkit.recipe.loading import load_recipe
    from toolkit.run.engine import Engine
    from toolkit.track.tracker import MlflowTracker

    monkeypatch.setenv("TOOLKIT_CACHE_DIR", str(tmp_path / "cache"))
    summaries = []
    for name, extra in (("first", []), ("second", ["train.lr=0.0002"])):  # the head's settings may change
        recipe = load_recipe(RECIPES / "frozen_features.toml", FAST + extra)
        summaries.append(Engine(recipe, tmp_path / name, device="cpu", observers=[MlflowTracker()]).run())
    client = MlflowClient(mlflow_store)
    tags = [client.get_run(s["mlflow_run_id"]).data.tags for s in summaries]
    assert [t["feature_cache"] for t in tags] == ["1 read, 3 encoded", "4 read, 0 encoded"]
    assert tags[0]["plugin.calibration"] == "cdc_head" and 0.0 <= summaries[1]["acc"] <= 1.0
    assert len(list((tmp_path / "cache" / "features").glob("*.pt"))) == 3

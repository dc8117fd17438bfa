"""recipes/frozen_features.toml through the CLI with a tiny randomly initialised timm model: the run encodes
its three views once (weak and strong copies, raw), and a second run of the same backbone reads them all from
the feature cache."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

from conftest import RECIPES, toolkit_env

FAST = ["model.backbone=timm:test_resnet", "data.image_size=16", "train.epochs=2", "head_init.nredo=1",
        "head_init.ortho_steps=20", "train.cached_views=2", "calibration.kmeans_nredo=1"]


def test_frozen_features_recipe_reuses_its_encodings(tmp_path: Path, mlflow_store: str) -> None:
    env = toolkit_env(MLFLOW_TRACKING_URI=mlflow_store, TOOLKIT_CACHE_DIR=str(tmp_path / "cache"))
    summaries = []
    for name, extra in (("first", []), ("second", ["train.lr=0.0002"])):  # the head's settings may change
        args = [sys.executable, "-m", "toolkit.commands.app", "run", str(RECIPES / "frozen_features.toml"),
                "--no-progress", "-o", str(tmp_path / name), *sum((["--set", s] for s in FAST + extra), [])]
        proc = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800)
        assert proc.returncode == 0, proc.stderr[-3000:]
        summaries.append(json.loads((tmp_path / name / "summary.json").read_text()))
    client = MlflowClient(mlflow_store)
    tags = [client.get_run(s["mlflow_run_id"]).data.tags for s in summaries]
    assert [t["feature_cache"] for t in tags] == ["0 read, 3 encoded", "3 read, 0 encoded"]
    assert tags[0]["plugin.calibration"] == "cdc_head" and 0.0 <= summaries[1]["acc"] <= 1.0
    assert len(list((tmp_path / "cache" / "features").glob("*.pt"))) == 3

"""Two runs at once against the same local SQLite MLflow store both complete with all their metrics."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

from conftest import RECIPES, toolkit_env

SETTINGS = ["pretrain.epochs=2", "pretrain.batch_size=256", "head_init.epochs=1", "head_init.nredo=1",
            "train.epochs=4", "model.hidden_dims=[32]"]


def test_two_runs_share_one_store(tmp_path: Path) -> None:
    # own backbone cache: another test's cached backbone of the same settings would skip pretraining here
    env = toolkit_env(MLFLOW_TRACKING_URI="", TOOLKIT_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("MLFLOW_TRACKING_URI")  # unset: use the default store under the working folder
    procs = []
    for seed in (0, 1):
        cmd = [sys.executable, "-m", "toolkit.commands.app", "run", str(RECIPES / "baseline_digits.toml"),
               *[a for s in SETTINGS + [f"experiment.seed={seed}"] for a in ("--set", s)],
               "-o", str(tmp_path / f"run{seed}"), "--no-progress"]
        procs.append(subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    for p in procs:
        _, err = p.communicate(timeout=1800)
        assert p.returncode == 0, err[-2000:]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    for seed in (0, 1):
        run_id = json.loads((tmp_path / f"run{seed}" / "summary.json").read_text())["mlflow_run_id"]
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED"
        assert sorted(m.step for m in client.get_metric_history(run_id, "acc")) == [0, 1, 2, 3, 4]
        assert len(client.get_metric_history(run_id, "pretrain_loss")) == 2

"""CDC end to end on digits through the CLI: both heads' metrics in summary.json, both reliability
diagrams and the failure-rejection metrics in MLflow."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

from conftest import RECIPES, toolkit_env

TINY = ["pretrain.epochs=3", "pretrain.batch_size=256", "model.hidden_dims=[64, 64]", "model.head_hidden_dim=64",
        "head_init.nredo=1", "head_init.ortho_steps=50", "calibration.kmeans_nredo=1", "train.epochs=2"]


def test_cdc_digits_run(tmp_path: Path, mlflow_store: str) -> None:
    out = tmp_path / "run"
    args = ["run", str(RECIPES / "cdc_digits.toml"), *sum((["--set", s] for s in TINY), []), "-o", str(out),
            "--device", "cpu", "--no-progress"]
    proc = subprocess.run([sys.executable, "-m", "toolkit.commands.app", *args], capture_output=True, text=True, cwd=tmp_path,
                          env=toolkit_env(MLFLOW_TRACKING_URI=mlflow_store), timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["plugins"] == {"pretrain": "simclr", "head_init": "prototype", "selection": "cdc_calibrated",
                                  "calibration": "cdc_head", "generation": "none"}
    for key in ("acc", "ece", "nmi", "ari", "aurc", "clu_acc", "clu_ece", "clu_nmi", "clu_aurc",
                "loss_calibration", "loss_entropy", "loss_cluster"):
        assert isinstance(summary.get(key), float), key
    assert 0.2 < summary["acc"] <= 1.0 and 0.2 < summary["clu_acc"] <= 1.0
    assert not any(key.startswith("cal_") for key in summary)  # no copies of the unprefixed (CDC-Cal) metrics

    client = MlflowClient(mlflow_store)
    run_id = summary["mlflow_run_id"]
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"reliability.png", "reliability_clu.png", "summary.json"} <= artifacts
    assert [m.step for m in client.get_metric_history(run_id, "clu_acc")] == [0, 1, 2]
    assert [m.step for m in client.get_metric_history(run_id, "ece")] == [0, 1, 2]
    assert client.get_metric_history(run_id, "cal_ece") == []
    assert len(client.get_metric_history(run_id, "loss_calibration")) == 2
    final = (out / "checkpoints" / "final.pt")
    import torch

    ckpt = torch.load(final, weights_only=True)
    assert "calibration_head" in ckpt["plugin_modules"]["calibration"]

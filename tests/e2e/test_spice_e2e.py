"""SPICE end to end on digits through the CLI: summary.json and MLflow hold both stages and both terms."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import RECIPES, toolkit_env

SPICE = RECIPES / "spice_digits.toml"
# a short stage 1 and a small net keep this quick; a lower confidence filter keeps the reliable set
# non-empty with so little training
SMALL = ["pretrain.epochs=10", "model.hidden_dims=[128, 128]", "head_init.heads=3", "head_init.epochs=3",
         "head_init.num_repeat=2", "train.epochs=2", "selection.min_confidence=0.5"]


def test_spice_digits_runs_both_stages_and_logs_both_terms(tmp_path: Path, mlflow_store: str) -> None:
    out = tmp_path / "run"
    args = [sys.executable, "-m", "toolkit.commands.app", "run", str(SPICE), *sum((["--set", s] for s in SMALL), []),
            "-o", str(out), "--device", "cpu", "--no-progress"]
    proc = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, timeout=1800,
                          env=toolkit_env(MLFLOW_TRACKING_URI=mlflow_store))
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["plugins"]["head_init"] == "spice_prototype"
    assert summary["plugins"]["selection"] == "spice_reliable"
    for key in ("acc", "nmi", "ari", "ece", "reliable_label_acc", "all_label_acc", "head_init_prototype_label_acc"):
        assert 0.0 <= summary[key] <= 1.0, key
    assert 0 < summary["reliable_label_count"] < summary["all_label_count"] == 1797
    assert summary["selected_fraction_reliable"] > 0 and summary["selected_fraction_consistency"] > 0
    assert summary["loss"] == pytest.approx(summary["loss_reliable"] + summary["loss_consistency"], rel=1e-5)

    client = MlflowClient(mlflow_store)
    run_id = summary["mlflow_run_id"]

    def history(name: str) -> dict[int, float]:
        return {m.step: m.value for m in client.get_metric_history(run_id, name)}

    assert sorted(history("head_init_loss")) == [1, 2, 3]
    assert set(history("head_init_prototype_labels").values()) == {1790.0}  # K * floor(1000/K) + K * floor(797/K)
    assert sorted(history("head_init_prototype_label_acc")) == [1, 2, 3]
    kept = history("head_init_kept_loss")
    assert kept[3] == pytest.approx(min(history("head_init_head_loss_min").values()))
    for term in ("reliable", "consistency"):
        for name in (f"loss_{term}", f"selected_fraction_{term}", f"pseudo_label_acc_{term}"):
            assert sorted(history(name)) == [1, 2], name
    # the reliable set is derived once, before epoch 1, from the stage-2 (epoch-0) predictions
    assert sorted(history("reliable_count")) == [1] and sorted(history("reliable_label_acc")) == [1]
    assert history("all_label_acc")[1] == pytest.approx(history("acc")[0])
    assert history("reliable_count")[1] == summary["reliable_label_count"]
    run = client.get_run(run_id)
    assert run.data.tags["plugin.head_init"] == "spice_prototype" and run.info.status == "FINISHED"

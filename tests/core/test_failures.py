"""Failures are named: a NaN loss or a raising plugin stops the run with stage, epoch and culprit,
keeps the last good checkpoint, and closes the MLflow run as FAILED."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from toolkit.files import load_safe
from toolkit.run.engine import Engine
from toolkit.errors import TrainingError
from toolkit.recipe.loading import load_recipe
from toolkit.track.tracker import MlflowTracker

from conftest import RECIPES, toolkit_env

TINY = ["pretrain.epochs=2", "pretrain.batch_size=256", "head_init.epochs=1", "head_init.nredo=1", "train.epochs=3",
        "model.hidden_dims=[32]", "selection.threshold=0.05"]


def _recipe_with(slot: str, method: str):  # type: ignore[no-untyped-def]
    recipe = load_recipe(RECIPES / "baseline_digits.toml", TINY)
    base = recipe.plugin_classes[slot]

    class Faulty(base):  # type: ignore[misc, valid-type]
        def select(self, batch, confidence):  # type: ignore[no-untyped-def]
            if batch.epoch == 2:
                if method == "nan":
                    sel = super().select(batch, confidence)
                    sel.weights = torch.full((len(sel),), float("nan"), device=batch.positions.device)
                    return sel
                raise ValueError("boom in select")
            return super().select(batch, confidence)

    recipe.plugin_classes[slot] = Faulty
    return recipe


@pytest.mark.parametrize("mode, fragments", [
    ("nan", ["stage self_label, epoch 2", "non-finite loss in loss_cluster"]),
    ("raise", ["stage self_label, epoch 2", "selection plugin 'threshold' raised ValueError in select(): boom in select"]),
])
def test_failure_is_named_and_run_marked_failed(tmp_path: Path, mlflow_store: str, mode: str,
                                                fragments: list[str]) -> None:
    out = tmp_path / "run"
    with pytest.raises(TrainingError) as info:
        Engine(_recipe_with("selection", mode), out, device="cpu", observers=[MlflowTracker()]).run()
    for fragment in fragments:
        assert fragment in str(info.value)
    assert load_safe(out / "checkpoints" / "last.pt")["epoch"] == 1  # the last good epoch is kept
    run_id = json.loads((out / "run_state.json").read_text())["mlflow_run_id"]
    run = MlflowClient(mlflow_store).get_run(run_id)
    assert run.info.status == "FAILED" and "epoch 2" in run.data.tags["error"]


def test_cli_reports_training_failure_in_one_line(tmp_path: Path, mlflow_store: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "toolkit.commands.app", "run", str(RECIPES / "baseline_digits.toml"),
                           *[a for s in TINY + ["train.lr=1e30", "train.backbone_lr=1e30"] for a in ("--set", s)],
                           "-o", str(tmp_path / "run"), "--no-progress"], capture_output=True, text=True,
                          env=toolkit_env(MLFLOW_TRACKING_URI=mlflow_store), timeout=1800)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert "training failed: stage self_label" in proc.stderr and "non-finite" in proc.stderr

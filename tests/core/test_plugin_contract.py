"""The engine checks each slot output where it receives it: a plugin that returns logits for probabilities, a
probability matrix one column too narrow or too wide, labels out of range, or batch positions for batch rows
stops the run with one line naming the plugin, slot and method, and its MLflow run ends FAILED. Before these
checks such runs FINISHED with impossible numbers (ECE 1.59, "9 clusters") or chance-level labels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from mlflow.tracking import MlflowClient

from toolkit.api import Batch, Selection
from toolkit.errors import TrainingError
from toolkit.recipe.loading import validate
from toolkit.run.engine import Engine
from toolkit.testing import tiny_recipe
from toolkit.track.tracker import MlflowTracker


def _run(tmp_path: Path, slot: str, override: dict[str, Any], samples: int = 96) -> tuple[str, str]:
    """Run the tiny recipe with `slot`'s plugin class patched by `override`; returns (error line, MLflow status)."""
    recipe = validate(tiny_recipe(data={"num_samples": samples}, train={"epochs": 2, "batch_size": 32}))
    base = recipe.plugin_classes[slot]
    recipe.plugin_classes[slot] = type(f"Faulty{base.__name__}", (base,), override)
    out = tmp_path / "run"
    with pytest.raises(TrainingError) as info:
        Engine(recipe, out, device="cpu", observers=[MlflowTracker()]).run()
    import json

    run_id = json.loads((out / "run_state.json").read_text())["mlflow_run_id"]
    return str(info.value), MlflowClient().get_run(run_id).info.status


def test_logits_instead_of_probabilities(tmp_path: Path, mlflow_store: str) -> None:
    def predict(self: Any, features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        return logits * 5.0  # forgot the softmax

    line, status = _run(tmp_path, "calibration", {"predict": predict})
    assert "calibration plugin 'none'" in line and "predict()" in line
    assert "logits instead of probabilities" in line and "\n" not in line
    assert status == "FAILED"


@pytest.mark.parametrize("columns", [2, 4])  # the tiny recipe has 3 clusters
def test_probabilities_of_the_wrong_width(tmp_path: Path, mlflow_store: str, columns: int) -> None:
    def confidence(self: Any, batch: Batch) -> torch.Tensor:
        return torch.full((len(batch), columns), 1.0 / columns)

    line, status = _run(tmp_path, "calibration", {"confidence": confidence})
    assert "calibration plugin 'none'" in line and "confidence()" in line and "epoch 1" in line
    assert f"must have shape [32, 3] (batch rows x clusters), got [32, {columns}]" in line
    assert status == "FAILED"


def test_labels_out_of_range(tmp_path: Path, mlflow_store: str) -> None:
    def select(self: Any, batch: Batch, confidence: torch.Tensor) -> Selection:
        rows = torch.arange(len(batch))
        return Selection(rows=rows, labels=confidence.argmax(1) + 1)  # cluster ids 1..3 of 0..2

    line, status = _run(tmp_path, "selection", {"select": select})
    assert "selection plugin 'all'" in line and "select()" in line
    assert "labels must be cluster ids in [0, 3), got values in [1, 3]" in line
    assert status == "FAILED"


def test_wrong_dtype_and_return_type(tmp_path: Path, mlflow_store: str) -> None:
    def float_rows(self: Any, batch: Batch, confidence: torch.Tensor) -> Selection:
        return Selection(rows=torch.arange(len(batch)).float(), labels=confidence.argmax(1))

    line, _ = _run(tmp_path, "selection", {"select": float_rows})
    assert "rows must be a 1-D long tensor of batch rows, got torch.float32" in line

    def a_tuple(self: Any, batch: Batch, confidence: torch.Tensor) -> Any:
        return torch.arange(len(batch)), confidence.argmax(1)

    line, _ = _run(tmp_path, "selection", {"select": a_tuple})
    assert "must return a Selection or a list of Selections, got tuple" in line


def test_positions_used_as_rows_on_a_multi_batch_data_set(tmp_path: Path, mlflow_store: str) -> None:
    def select(self: Any, batch: Batch, confidence: torch.Tensor) -> Selection:
        return Selection(rows=batch.positions, labels=confidence.argmax(1))

    line, _ = _run(tmp_path, "selection", {"select": select})
    assert "rows must be batch rows in [0, 32)" in line and "Batch.positions" in line


def test_index_mix_up_on_a_one_batch_data_set_names_the_plugin(tmp_path: Path, mlflow_store: str) -> None:
    """The mix-up API 1.x allowed: `Selection(index=batch.index)` on a data set that fits in one batch gave
    valid-looking rows and chance-level labels. In 2.0 the two meanings have two names (Batch.positions,
    Selection.rows), so code written the old way stops at once, naming the plugin and method."""

    def select(self: Any, batch: Batch, confidence: torch.Tensor) -> Selection:
        return Selection(index=batch.index, labels=confidence.argmax(1))  # type: ignore[call-arg, attr-defined]

    line, status = _run(tmp_path, "selection", {"select": select}, samples=32)
    assert "selection plugin 'all' raised AttributeError in select()" in line and "index" in line
    assert status == "FAILED"


def test_a_head_of_the_wrong_shape(tmp_path: Path, mlflow_store: str) -> None:
    def init_head(self: Any, ctx: Any, backbone: Any, features: torch.Tensor, pretrained_head: Any) -> Any:
        return torch.nn.Linear(features.shape[1], ctx.num_clusters + 1)

    line, _ = _run(tmp_path, "head_init", {"init_head": init_head})
    assert "head_init plugin 'random'" in line and "init_head()" in line and "logits [B, 3]" in line


def test_valid_outputs_pass_the_checks(tmp_path: Path, mlflow_store: str) -> None:
    recipe = validate(tiny_recipe(train={"epochs": 1, "batch_size": 32}))
    summary = Engine(recipe, tmp_path / "run", device="cpu").run()
    assert 0.0 <= summary["acc"] <= 1.0

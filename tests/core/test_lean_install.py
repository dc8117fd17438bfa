"""A lean installation (benchmarks/gpu's wheelhouse: no Ray, no Optuna, no MLflow server, no matplotlib) still
runs a recipe end to end: every result but the PNG figures."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from toolkit.recipe.loading import validate
from toolkit.run.engine import Engine


def test_a_run_without_matplotlib_writes_everything_but_the_figures(tmp_path: Path, mlflow_store: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = [name for name in sys.modules if name.split(".")[0] == "matplotlib"]  # an earlier test may have
    for name in ("matplotlib", "ray", "optuna", "mlflow.server", *loaded):        # imported some of it
        monkeypatch.setitem(sys.modules, name, None)  # importing any of them now fails
    monkeypatch.delitem(sys.modules, "toolkit.run.figures", raising=False)
    recipe = validate({"experiment": {"device": "cpu"},
                       "data": {"dataset": "synthetic", "num_samples": 96, "num_classes": 3, "synthetic_size": 8,
                                "synthetic_channels": 1},
                       "model": {"backbone": "mlp", "hidden_dims": [16]}, "train": {"epochs": 1, "batch_size": 32}},
                      "tiny")
    summary = Engine(recipe, tmp_path / "run", device="cpu").run()
    assert 0.0 <= summary["acc"] <= 1.0
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["acc"] == summary["acc"]
    assert (tmp_path / "run" / "checkpoints" / "final.pt").is_file()
    assert not list((tmp_path / "run").glob("*.png"))

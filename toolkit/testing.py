"""Test a plugin in a few lines: run it in the real engine, on small generated data, with a throw-away MLflow store.

    from toolkit.testing import run_plugin

    def test_my_selection_runs(tmp_path):
        result = run_plugin("selection", "my_selection", {"threshold": 0.5}, tmp_path=tmp_path)
        assert result.mlflow_run.info.status == "FINISHED"
        assert 0.0 <= result.summary["acc"] <= 1.0

Everything is real (entry-point discovery, recipe validation, the engine, MLflow on SQLite); everything it
writes stays under `tmp_path` (run folder, MLflow store, backbone cache), so nothing lands in the plugin's
source folder. The data set is the built-in `synthetic` one: labelled Gaussian blobs rendered as tiny images.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from toolkit.api.slots import Plugin

#: The recipe `run_plugin` starts from: 96 synthetic 8x8 images in 3 classes, an MLP, one short epoch per stage.
TINY_RECIPE: dict[str, Any] = {
    "experiment": {"name": "plugin-test", "device": "cpu", "seed": 0},
    "data": {"dataset": "synthetic", "num_samples": 96, "num_classes": 3, "synthetic_size": 8},
    "model": {"backbone": "mlp", "hidden_dims": [32]},
    "train": {"epochs": 2, "batch_size": 32},
}


@dataclass
class PluginRun:
    """What a test may check: the summary dict, the run's folder, and its MLflow run (status, params, metrics)."""

    summary: dict[str, Any]
    output_dir: Path
    tracking_uri: str
    mlflow_run: Any

    def metric_history(self, key: str) -> list[float]:
        """Every logged value of metric `key`, in step order."""
        from mlflow.tracking import MlflowClient

        history = MlflowClient(self.tracking_uri).get_metric_history(self.mlflow_run.info.run_id, key)
        return [m.value for m in sorted(history, key=lambda m: m.step)]


def find_plugin(slot: str, name: str) -> type[Plugin[Any]]:
    """The class registered under `name` in `slot`, found through entry points exactly as a recipe finds it."""
    from toolkit.registry.entry_points import load

    return load(slot, name)


def tiny_recipe(slot: str | None = None, name: str | None = None, options: dict[str, Any] | None = None,
                **sections: dict[str, Any]) -> dict[str, Any]:
    """TINY_RECIPE with plugin `name` in `slot` (and its options), and any section's keys replaced."""
    tree = {key: dict(value) for key, value in TINY_RECIPE.items()}
    for section, values in sections.items():
        tree.setdefault(section, {}).update(values)
    if slot is not None and name is not None:
        tree[slot] = {"method": name, **(options or {})}
    return tree


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_plugin(slot: str, name: str, options: dict[str, Any] | None = None, *, tmp_path: Path,
               recipe: dict[str, Any] | None = None, **sections: dict[str, Any]) -> PluginRun:
    """Run plugin `name` of `slot` (with `options`) in the real engine on tiny synthetic data, tracked in a
    SQLite MLflow store under `tmp_path`. `recipe` replaces the tiny recipe; `sections` replace keys of it
    (e.g. `train={"epochs": 3}`). Raises what `toolkit run` would (RecipeError, TrainingError, ...)."""
    from mlflow.tracking import MlflowClient

    from toolkit.recipe.loading import validate
    from toolkit.run.engine import Engine
    from toolkit.track.store import default_store
    from toolkit.track.tracker import MlflowTracker

    tmp_path = Path(tmp_path)
    tree = recipe if recipe is not None else tiny_recipe(slot, name, options, **sections)
    if recipe is not None:
        tree = {**tree, slot: {"method": name, **(options or {})}}
    uri, artifacts = default_store(tmp_path / "mlruns")
    env = {"MLFLOW_TRACKING_URI": uri, "TOOLKIT_CACHE_DIR": str(tmp_path / "cache"),
           "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    with _environment(env):
        validated = validate(tree, f"<{slot} plugin {name} test>")
        out = tmp_path / "run"
        summary = Engine(validated, out, device="cpu", observers=[MlflowTracker(uri, artifacts)]).run()
        run = MlflowClient(uri).get_run(summary["mlflow_run_id"])
    return PluginRun(summary, out, uri, run)

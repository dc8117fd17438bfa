"""`[experiment] restarts = N`: N head-init restarts, the kept head chosen without labels (by consensus, or
by the plugin's own `restart_score`), every restart's score logged with its ACC as evaluation only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from toolkit.recipe.loading import load_recipe
from toolkit.run.engine import Engine
from toolkit.run.restarts import consensus_scores
from toolkit.track.tracker import MlflowTracker

from conftest import RECIPES

TINY = ["pretrain.epochs=3", "pretrain.batch_size=256", "head_init.epochs=2", "head_init.nredo=1", "train.epochs=1",
        "model.hidden_dims=[32]", "experiment.restarts=3",
        "head_init.partition=kmeans"]  # the partition choice is tested in test_head_partition.py


def test_consensus_prefers_the_typical_partition() -> None:
    a = np.repeat([0, 1, 2], 20)
    relabelled = (a + 1) % 3  # the same partition under other names: full agreement
    odd = np.tile([0, 1, 2], 20)  # unrelated to both
    scores = consensus_scores([odd, a, relabelled])
    assert scores[1] == scores[2] == pytest.approx(0.5, abs=0.05) and scores[0] < 0.05
    assert consensus_scores([a]) == [1.0]


def _history(uri: str, run_id: str, key: str) -> list[float]:
    return [m.value for m in sorted(MlflowClient(uri).get_metric_history(run_id, key), key=lambda m: m.step)]


def test_restarts_are_scored_logged_and_the_best_kept(tmp_path: Path, mlflow_store: str) -> None:
    summary = Engine(load_recipe(RECIPES / "baseline.toml", TINY), tmp_path / "run", device="cpu",
                     observers=[MlflowTracker()]).run()
    run_id = summary["mlflow_run_id"]
    scores, kept = _history(mlflow_store, run_id, "restarts_score"), _history(mlflow_store, run_id, "restarts_kept")
    accs = _history(mlflow_store, run_id, "restarts_acc")
    assert len(scores) == len(kept) == len(accs) == 3 and sum(kept) == 1
    assert kept[int(np.argmax(scores))] == 1.0  # the consensus choice, not the best ACC
    assert all(0.0 <= a <= 1.0 for a in accs)
    # each restart had its own resume points, so one restart cannot resume from another's
    stages = tmp_path / "run" / "checkpoints" / "stages"
    assert sorted(p.parent.name for p in stages.glob("restart_*/head_init.pt")) == ["restart_0", "restart_1", "restart_2"]


def test_a_plugin_declared_score_decides(tmp_path: Path, mlflow_store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from deepclust_baseline.head_kmeans import KMeansPseudoLabelHeadInit

    base_seed = load_recipe(RECIPES / "baseline.toml", TINY).experiment.seed
    monkeypatch.setattr(KMeansPseudoLabelHeadInit, "restart_score",
                        lambda self, ctx, head, features: float(ctx.seed - base_seed))  # the last restart wins
    summary = Engine(load_recipe(RECIPES / "baseline.toml", TINY), tmp_path / "run", device="cpu",
                     observers=[MlflowTracker()]).run()
    assert _history(mlflow_store, summary["mlflow_run_id"], "restarts_kept") == [0.0, 0.0, 1.0]
    assert _history(mlflow_store, summary["mlflow_run_id"], "restarts_score") == [0.0, 1000.0, 2000.0]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["num_clusters"] == 10

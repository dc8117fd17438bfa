"""DRC with `[experiment] restarts = N`: the partition comes out of pretraining, so the engine repeats the
pretraining (seeds differ) and keeps the run with the lowest final L_AP; each restart is logged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from mlflow.tracking import MlflowClient

from toolkit.recipe.loading import load_recipe
from toolkit.run.engine import Engine
from toolkit.run.events import Observer
from toolkit.track.tracker import MlflowTracker

from conftest import RECIPES

TINY = ["pretrain.epochs=2", "pretrain.batch_size=128", "model.hidden_dims=[32]", "experiment.restarts=3",
        "data.long_tail=10"]


def _history(uri: str, run_id: str, key: str) -> list[float]:
    return [m.value for m in sorted(MlflowClient(uri).get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp))]


class PretrainEpochs(Observer):
    """Every pretraining epoch's metrics, in the order they happened (all restarts)."""

    def __init__(self) -> None:
        self.seen: list[dict[str, float]] = []

    def on_epoch_end(self, *, stage: str, epoch: int, metrics: dict[str, float], state: object) -> None:
        if stage == "pretrain":
            self.seen.append(dict(metrics))


def test_pretrain_restarts_keep_the_lowest_l_ap(tmp_path: Path, mlflow_store: str) -> None:
    epochs = PretrainEpochs()
    summary = Engine(load_recipe(RECIPES / "drc.toml", TINY), tmp_path / "run", device="cpu",
                     observers=[MlflowTracker(), epochs]).run()
    run_id = summary["mlflow_run_id"]
    scores, kept = _history(mlflow_store, run_id, "restarts_score"), _history(mlflow_store, run_id, "restarts_kept")
    assert len(scores) == 3 and kept == [float(i == int(np.argmax(scores))) for i in range(3)]
    # the score is minus the last pretraining epoch's L_AP of each restart, in restart order
    ap = [m["ap"] for m in epochs.seen]
    assert len(ap) == 6  # 3 restarts x 2 epochs
    assert np.allclose(scores, [-ap[1], -ap[3], -ap[5]], atol=1e-6)
    stages = tmp_path / "run" / "checkpoints" / "stages"
    assert sorted(p.parent.name for p in stages.glob("restart_*/pretrain.pt")) == ["restart_0", "restart_1", "restart_2"]

"""`toolkit tune` with data-parallel trials: one trial = a Ray Train TorchTrainer of 2 gloo workers on the CPU.

Checks that the trial completes, its metrics reach Tune's results and its MLflow child run (rank 0 only),
and that the two ranks trained on disjoint shards and ended with identical weights (the engine's ddp_*
epoch figures, summed / gathered over ranks).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator

import pytest

ray = pytest.importorskip("ray")
from mlflow.tracking import MlflowClient  # noqa: E402

from toolkit.tune import Search  # noqa: E402

from conftest import RECIPES  # noqa: E402

TINY = ['data.dataset="synthetic"', "data.num_samples=240", "data.num_classes=3", "data.synthetic_size=8",
        "data.synthetic_channels=1", 'pretrain.method="none"', 'head_init.method="random"', "train.epochs=2",
        "train.batch_size=64", "model.hidden_dims=[16]", 'experiment.device="cpu"',
        'tune.scheduler="fifo"', 'tune.search_alg="random"', "tune.resources.workers=2", "tune.resources.cpus=1",
        'tune.space={"selection.threshold" = {type="uniform", low=0.1, high=0.5}}']


@pytest.fixture(scope="module", autouse=True)
def ray_instance() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    yield
    ray.shutdown()


def test_data_parallel_trial(tmp_path: Path, mlflow_store: str) -> None:
    out = tmp_path / "search"
    result = Search(out, progress=False).start(RECIPES / "baseline_digits.toml", TINY, num_samples=1)
    assert not result.interrupted and len(result.rows) == 1, result.rows
    row = result.rows[0]
    assert row["status"] == "finished" and row["epoch"] == 2 and row["metric"] is not None, row

    client = MlflowClient(mlflow_store)
    run = client.get_run(row["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["mlflow.parentRunId"] == result.parent_run_id
    m = run.data.metrics
    assert m["ddp_world_size"] == 2
    assert m["ddp_rows_overlap"] == 0  # no row trained on by both ranks in an epoch
    assert m["ddp_rows_covered"] == pytest.approx(192 / 240)  # together they covered the epoch (drop_last)
    assert m["ddp_weight_spread"] == 0.0  # the ranks' parameter checksums are equal
    assert [h.step for h in client.get_metric_history(run.info.run_id, "ddp_weight_spread")] == [1, 2]
    assert (out / "trials" / row["trial_id"] / "summary.json").is_file()
    assert (out / "best.toml").is_file()

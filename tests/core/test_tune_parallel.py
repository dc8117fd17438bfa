"""`toolkit tune` with data-parallel trials: one trial = a Ray Train TorchTrainer of 2 gloo workers on the CPU.

Checks that the trial completes, its metrics reach Tune's results and its MLflow child run (rank 0 only),
and that the two ranks trained on disjoint shards and ended with identical weights (the engine's ddp_*
epoch figures, summed / gathered over ranks).
"""

from __future__ import annotations

from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
from mlflow.tracking import MlflowClient  # noqa: E402

from toolkit.tune.driver import Search  # noqa: E402

from conftest import RECIPES  # noqa: E402

TINY = ['data.dataset="synthetic"', "data.num_samples=240", "data.num_classes=3", "data.synthetic_size=8",
        "data.synthetic_channels=1", 'pretrain.method="none"', 'head_init.method="random"', "train.epochs=2",
        "train.batch_size=64", "model.hidden_dims=[16]", 'experiment.device="cpu"',
        'tune.scheduler="fifo"', 'tune.search_alg="random"', "tune.resources.workers=2", "tune.resources.cpus=1",
        'tune.space={"selection.threshold" = {type="uniform", low=0.1, high=0.5}}']

pytestmark = [pytest.mark.usefixtures("ray_local"), pytest.mark.xdist_group("ray")]  # one Ray instance, one worker


def test_asha_stops_a_poor_data_parallel_trial(tmp_path: Path, mlflow_store: str) -> None:
    """Two data-parallel trials one after the other: the first (k-means head) finishes, with its metrics in Tune's
    results and its MLflow child run (rank 0 only), its two ranks on disjoint shards ending with identical
    weights; the second (random head) is below it at ASHA's first rung, so ASHA stops it; its workers are
    released and its child run is closed."""
    space = ['tune.scheduler="asha"', "tune.grace_period=1", "tune.reduction_factor=2", "train.epochs=3",
             "tune.max_concurrent=1", 'tune.metric="acc"',
             'tune.space={"head_init.method" = {type="choice", values=["kmeans_pseudo_label", "random"]}}',
             'tune.initial=[{"head_init.method"="kmeans_pseudo_label"}, {"head_init.method"="random"}]']
    out = tmp_path / "search"
    result = Search(out, progress=False).start(RECIPES / "baseline_digits.toml", TINY + space, num_samples=2)
    by_init = {r["config"]["head_init.method"]: r for r in result.rows}
    assert set(by_init) == {"kmeans_pseudo_label", "random"}, result.rows
    good, poor = by_init["kmeans_pseudo_label"], by_init["random"]
    assert good["status"] == "finished" and good["epoch"] == 3 and good["metric"] is not None, good
    assert poor["status"] == "stopped" and poor["epoch"] < 3, poor
    assert result.best is not None and result.best["trial_id"] == good["trial_id"]

    client = MlflowClient(mlflow_store)
    stopped = client.get_run(poor["mlflow_run_id"])
    assert stopped.info.status == "KILLED" and "stopped early" in stopped.data.tags["tune.stopped"]
    run = client.get_run(good["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["mlflow.parentRunId"] == result.parent_run_id
    m = run.data.metrics
    assert m["ddp_world_size"] == 2
    assert m["ddp_rows_overlap"] == 0  # no row trained on by both ranks in an epoch
    assert m["ddp_rows_covered"] == pytest.approx(192 / 240)  # together they covered the epoch (drop_last)
    assert m["ddp_weight_spread"] == 0.0  # the ranks' parameter checksums are equal
    assert [h.step for h in client.get_metric_history(run.info.run_id, "ddp_weight_spread")] == [1, 2, 3]
    assert (out / "trials" / good["trial_id"] / "summary.json").is_file()
    assert (out / "best.toml").is_file()
    # The stopped trial's workers no longer hold CPUs (the driver removed their placement group): without
    # that, a later data-parallel trial would wait for them forever.
    assert ray.available_resources().get("CPU") == 2.0, ray.available_resources()
    assert (out / "trials" / poor["trial_id"] / "placement_group.id").is_file()

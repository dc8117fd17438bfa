"""The driver's replay of trial journals into MLflow (toolkit/tune_tracking.py), without Ray.

A trial writes lines while the driver reads: a half-written last line must wait for the next sync, and a
sync after a driver restart (search resumed) must neither open a second run nor log an epoch twice.
"""

from __future__ import annotations

import json
from pathlib import Path

from mlflow.tracking import MlflowClient

from toolkit.run.folder import RunFolder
from toolkit.track.journal import ChildRuns


def _line(event: dict) -> bytes:
    return (json.dumps(event) + "\n").encode()


def _search(tmp_path: Path, uri: str, trial_id: str) -> tuple[MlflowClient, str, str, Path]:
    """An experiment with a parent run and an empty trial folder: (client, experiment id, parent id, folder)."""
    client = MlflowClient(uri)
    exp = client.create_experiment("e")
    parent = client.create_run(exp, run_name="tune-e").info.run_id
    trial = tmp_path / "trials" / trial_id
    trial.mkdir(parents=True)
    return client, exp, parent, trial


def test_replay_is_incremental_and_survives_a_driver_restart(tmp_path: Path, mlflow_store: str) -> None:
    client, exp, parent, trial = _search(tmp_path, mlflow_store, "t1")
    (trial / "summary.json").write_text("{}")
    start = {"event": "start", "name": "e-s0", "tags": {"dataset": "digits"}, "params": {"train.lr": "0.001"},
             "plugin_tags": {"plugin.selection": "threshold"}}
    epoch = {"event": "epoch", "stage": "self_label", "epoch": 0, "metrics": {"acc": 0.5}, "time_ms": 1}
    second = _line({**epoch, "epoch": 1, "metrics": {"acc": 0.75}})
    journal = RunFolder(trial).journal
    journal.write_bytes(_line(start) + _line(epoch) + second[:10])  # the trial is mid-way through a line

    children = ChildRuns(mlflow_store, None, "e", parent, tmp_path / "trials")
    run_id = children.sync("t1")
    assert run_id is not None
    run = client.get_run(run_id)
    assert run.data.tags["mlflow.parentRunId"] == parent and run.data.tags["tune.trial_id"] == "t1"
    assert run.data.params["train.lr"] == "0.001" and run.data.tags["plugin.selection"] == "threshold"
    assert [m.value for m in client.get_metric_history(run_id, "acc")] == [0.5]

    with open(journal, "ab") as fh:  # the line is completed, the run ends
        fh.write(second[10:] + _line({"event": "end", "tags": {"pretrain_cache": "hit"}, "output_dir": str(trial)}))
    restarted = ChildRuns(mlflow_store, None, "e", parent, tmp_path / "trials")  # e.g. after --resume
    assert restarted.sync("t1") == run_id
    assert restarted.sync("t1") == run_id  # nothing new: nothing logged twice
    assert sorted((m.step, m.value) for m in client.get_metric_history(run_id, "acc")) == [(0, 0.5), (1, 0.75)]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["pretrain_cache"] == "hit"
    assert "summary.json" in {a.path for a in client.list_artifacts(run_id)}
    assert json.loads(RunFolder(trial).child_state.read_text())["offset"] == journal.stat().st_size
    runs = client.search_runs([exp], filter_string=f"tags.mlflow.parentRunId = '{parent}'")
    assert [r.info.run_id for r in runs] == [run_id]


def test_a_failed_trial_is_closed_with_its_error(tmp_path: Path, mlflow_store: str) -> None:
    client, _, parent, trial = _search(tmp_path, mlflow_store, "t2")
    (RunFolder(trial).journal).write_bytes(
        _line({"event": "start", "name": "e-s0", "tags": {}, "params": {}, "plugin_tags": {}})
        + _line({"event": "error", "status": "FAILED", "error": "TrainingError: non-finite loss"}))
    run_id = ChildRuns(mlflow_store, None, "e", parent, tmp_path / "trials").sync("t2")
    run = client.get_run(run_id)
    assert run.info.status == "FAILED" and run.data.tags["error"] == "TrainingError: non-finite loss"


def test_epochs_a_resumed_trial_repeats_are_logged_once(tmp_path: Path, mlflow_store: str) -> None:
    """A trial cut after epoch 0 (which has no checkpoint) repeats it when resumed: the journal then holds
    epoch 0 twice, and the child run must still have one step 0. Another metric at a logged step still goes in."""
    client, _, parent, trial = _search(tmp_path, mlflow_store, "t3")
    start = _line({"event": "start", "name": "e-s0", "tags": {}, "params": {}, "plugin_tags": {}})
    epoch0 = {"event": "epoch", "stage": "self_label", "epoch": 0, "metrics": {"acc": 0.5}, "time_ms": 1}
    (RunFolder(trial).journal).write_bytes(start + _line(epoch0))
    children = ChildRuns(mlflow_store, None, "e", parent, tmp_path / "trials")
    run_id = children.sync("t3")
    with open(RunFolder(trial).journal, "ab") as fh:  # the resumed trial: start again, epoch 0 again, then on
        fh.write(start + _line({**epoch0, "time_ms": 2}) + _line({**epoch0, "metrics": {"reliable_count": 7.0}})
                 + _line({**epoch0, "epoch": 1, "metrics": {"acc": 0.75}}))
    assert children.sync("t3") == run_id
    assert sorted((m.step, m.value) for m in client.get_metric_history(run_id, "acc")) == [(0, 0.5), (1, 0.75)]
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "reliable_count")] == [(0, 7.0)]

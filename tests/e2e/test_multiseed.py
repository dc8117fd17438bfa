"""Multi-seed runs: seed parsing, aggregation by hand, and `toolkit run --seeds` with MLflow parent/children."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from toolkit.errors import UserError
from toolkit.run.seeds import aggregate, parse_seeds

from conftest import RECIPES, toolkit_env

TINY = ["pretrain.epochs=2", "model.hidden_dims=[32, 32]", "pretrain.aux_head=false"]


def test_parse_seeds() -> None:
    assert parse_seeds("0,1,2") == [0, 1, 2]
    assert parse_seeds("3, 1,3") == [3, 1]
    assert parse_seeds("0-2,7") == [0, 1, 2, 7]
    for bad in ("", "a,b", "1,,x", "-1"):
        with pytest.raises(UserError):
            parse_seeds(bad)


def test_aggregate_mean_and_sample_std() -> None:
    summaries = {0: {"acc": 0.5, "nmi": 0.25, "seed": 0, "epochs": 3, "oracle": False, "recipe": "r", "ece": None},
                 1: {"acc": 0.7, "nmi": 0.75, "seed": 1, "epochs": 3, "oracle": False, "recipe": "r", "ece": 0.1}}
    agg = aggregate(summaries)
    assert set(agg) == {"acc", "nmi"}  # run descriptors, booleans, strings and partial metrics are left out
    assert agg["acc"]["mean"] == pytest.approx(0.6)
    assert agg["acc"]["std"] == pytest.approx(math.sqrt(0.02))  # ddof=1: sqrt(((-.1)^2 + .1^2) / 1)
    assert agg["nmi"]["std"] == pytest.approx(math.sqrt(0.125))
    assert agg["acc"]["values"] == {"0": 0.5, "1": 0.7} and agg["acc"]["min"] == 0.5 and agg["acc"]["max"] == 0.7
    assert aggregate({4: {"acc": 0.9}})["acc"]["std"] is None  # one seed has no spread


def _cli(args: list[str], cwd: Path, uri: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "toolkit.commands.app", *args], capture_output=True, text=True, cwd=cwd,
                          env=toolkit_env(MLFLOW_TRACKING_URI=uri, OMP_NUM_THREADS="1"), timeout=1800)


def test_seeds_run_groups_children_under_a_parent_and_resumes(tmp_path: Path, mlflow_store: str) -> None:
    out = tmp_path / "ms"
    args = ["run", str(RECIPES / "drc_digits.toml"), "--seeds", "0,1", "-o", str(out), "--no-progress",
            "--device", "cpu", *sum((["--set", s] for s in TINY), [])]
    proc = _cli(args, tmp_path, mlflow_store)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "mean" in proc.stdout and "seed 1" in proc.stdout
    data = json.loads((out / "seeds_summary.json").read_text())
    assert data["seeds"] == [0, 1]
    accs = [json.loads((out / f"seed-{s}" / "summary.json").read_text())["acc"] for s in (0, 1)]
    acc = data["metrics"]["acc"]
    assert acc["values"] == {"0": accs[0], "1": accs[1]} and accs[0] != accs[1]
    assert acc["mean"] == pytest.approx(sum(accs) / 2)
    assert acc["std"] == pytest.approx(abs(accs[0] - accs[1]) / math.sqrt(2))
    assert data["per_seed"]["1"]["acc"] == accs[1]

    client = MlflowClient(mlflow_store)
    parent = client.get_run(data["parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.tags["seeds"] == "0,1"
    # the parent carries its children's metric names (acc = the mean) so it sits in their columns and charts
    assert parent.data.metrics["acc"] == pytest.approx(acc["mean"]) and "acc_mean" not in parent.data.metrics
    assert parent.data.metrics["acc_std"] == pytest.approx(acc["std"])
    assert min(m.timestamp for m in client.get_metric_history(parent.info.run_id, "acc")) > 1_600_000_000_000
    assert parent.data.params["seeds"] == "0,1" and parent.data.params["pretrain.method"] == "drc"
    assert "experiment.seed" not in parent.data.params
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(c.data.params["experiment.seed"] for c in children) == ["0", "1"]
    assert all(c.info.status == "FINISHED" for c in children)

    # Resume: seed 0 finished (read back), seed 1 "interrupted" (continues in its folder and MLflow run).
    seed1 = out / "seed-1"
    state = json.loads((seed1 / "run_state.json").read_text())
    (seed1 / "run_state.json").write_text(json.dumps({**state, "status": "failed"}))
    (seed1 / "summary.json").unlink()
    proc = _cli([*args, "--resume"], tmp_path, mlflow_store)
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = json.loads((out / "seeds_summary.json").read_text())
    assert again["parent_run_id"] == data["parent_run_id"]
    assert again["metrics"]["acc"]["values"] == acc["values"]  # same seeds, same results
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert len(children) == 2 and json.loads((seed1 / "summary.json").read_text())["mlflow_run_id"] == state["mlflow_run_id"]

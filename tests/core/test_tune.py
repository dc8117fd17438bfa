"""`toolkit tune` on a real local Ray instance (started once for the module) with digits and tiny trials.

Covers: a 4-trial search (MLflow parent + 4 children with metrics, best.toml runs), a failing trial
that leaves the others finished, and resume after an interrupted (SIGINT) search without re-running
finished trials.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
from mlflow.tracking import MlflowClient  # noqa: E402

from toolkit.tune.driver import Search  # noqa: E402
from toolkit.tune.state import SearchFolder  # noqa: E402

from conftest import RECIPES, toolkit_env  # noqa: E402

BASELINE = RECIPES / "baseline_digits.toml"
TINY = ["pretrain.epochs=2", "pretrain.batch_size=256", "head_init.epochs=1", "head_init.nredo=1", "train.epochs=2",
        "model.hidden_dims=[32]", "tune.resources.cpus=1", "tune.grace_period=1"]

pytestmark = [pytest.mark.usefixtures("ray_local"), pytest.mark.xdist_group("ray")]  # one Ray instance, one worker


def children(client: MlflowClient, parent: str) -> list:
    exp_ids = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(exp_ids, filter_string=f"tags.mlflow.parentRunId = '{parent}'")


def test_search_of_four_trials(tmp_path: Path, mlflow_store: str) -> None:
    out = tmp_path / "search"
    result = Search(out, progress=False).start(BASELINE, TINY + ["tune.search_alg=\"optuna\""], num_samples=4)
    assert not result.interrupted
    assert result.metric == "acc" and result.mode == "max"  # digits has labels
    assert len(result.rows) == 4 and all(r["status"] in ("finished", "stopped") for r in result.rows), result.rows
    assert result.best is not None and result.best["status"] == "finished"
    lrs = {r["config"]["train.lr"] for r in result.rows}
    assert len(lrs) == 4 and all(1e-4 <= lr <= 1e-2 for lr in lrs)

    client = MlflowClient(mlflow_store)
    parent = client.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["toolkit.kind"] == "tune"
    assert parent.data.metrics["best_acc"] == pytest.approx(result.best["metric"])
    assert float(parent.data.params["best.train.lr"]) == pytest.approx(result.best["config"]["train.lr"])
    kids = children(client, result.parent_run_id)
    assert len(kids) == 4
    for row in result.rows:  # trials on the driver's machine journal; the driver wrote their child runs
        assert (out / "trials" / row["trial_id"] / "tracking.jsonl").is_file()
        assert row["mlflow_run_id"] in {k.info.run_id for k in kids}
    for kid in kids:
        history = client.get_metric_history(kid.info.run_id, "acc")
        assert history and min(m.step for m in history) == 0, kid.info.run_name
        assert kid.data.tags["plugin.selection"] == "threshold" and "head_init_loss" in kid.data.metrics
        assert kid.info.status in ("FINISHED", "KILLED")
        assert kid.data.tags["tune.trial_id"] in {r["trial_id"] for r in result.rows}
        assert float(kid.data.params["train.lr"]) in lrs
    finished = [k for k in kids if k.info.status == "FINISHED"]
    assert finished and all("summary.json" in {a.path for a in client.list_artifacts(k.info.run_id)} for k in finished)

    # best.toml is a complete recipe, without [tune], with the best values, and `toolkit run` runs it again.
    best = SearchFolder(out).best_recipe
    text = best.read_text()
    assert "[tune" not in text and "[pretrain]" in text
    from toolkit.recipe.loading import load_recipe

    assert load_recipe(best).config.train.lr == pytest.approx(result.best["config"]["train.lr"])
    proc = subprocess.run([sys.executable, "-m", "toolkit.commands.app", "run", str(best), "-o", str(tmp_path / "rerun"),
                           "--device", "cpu"], capture_output=True, text=True, timeout=1800,
                          env=toolkit_env(MLFLOW_TRACKING_URI=mlflow_store))
    assert proc.returncode == 0, proc.stderr[-2000:]
    rerun = json.loads((tmp_path / "rerun" / "summary.json").read_text())
    assert rerun["acc"] == pytest.approx(result.best["metric"], abs=0.03)  # same recipe and seed, same result


@pytest.mark.parametrize("tracking", ["auto", "trial"])
def test_failing_trial_leaves_the_others_finished(tmp_path: Path, mlflow_store: str, tracking: str) -> None:
    """An absurd backbone learning rate makes the self-labeling loss non-finite: that trial fails, the other runs.
    Both ways of tracking a trial (journal replayed by the driver; MLflow in the trial) record the failure."""
    space = [f'tune.tracking="{tracking}"', 'tune.space={"train.backbone_lr" = {type="choice", values=[1e-4, 1e30]}}',
             'tune.initial=[{"train.backbone_lr"=1e30}, {"train.backbone_lr"=1e-4}]',
             'tune.search_alg="random"', 'tune.scheduler="fifo"', "selection.threshold=0.1", "train.lr=1e30"]
    result = Search(tmp_path / "search", progress=False).start(BASELINE, TINY + space, num_samples=2)
    by_lr = {r["config"]["train.backbone_lr"]: r for r in result.rows}
    assert set(by_lr) == {1e-4, 1e30}, result.rows
    failed, ok = by_lr[1e30], by_lr[1e-4]
    assert failed["status"] == "failed" and "non-finite" in failed["error"], failed
    assert ok["status"] == "finished" and result.best is not None and result.best["trial_id"] == ok["trial_id"]
    client = MlflowClient(mlflow_store)
    kids = {k.info.status: k for k in children(client, result.parent_run_id)}
    assert sorted(kids) == ["FAILED", "FINISHED"]
    assert "non-finite" in kids["FAILED"].data.tags["error"]
    journal = (tmp_path / "search" / "trials" / failed["trial_id"] / "tracking.jsonl").is_file()
    assert journal == (tracking == "auto")


def _interrupt_after_first_trial(trials_dir: Path, timeout: float = 300) -> threading.Thread:
    """Ctrl-C (SIGINT to this process, which Ray Tune handles by saving its state) once a second trial has
    started: with one trial at a time, the first has then finished for Ray."""

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(list(trials_dir.glob("*/run_state.json"))) >= 2:
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.2)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_resume_after_interrupted_search(tmp_path: Path, mlflow_store: str) -> None:
    out = tmp_path / "search"
    watcher = _interrupt_after_first_trial(out / "trials")
    first = Search(out, progress=False).start(BASELINE, TINY + ["tune.max_concurrent=1", 'tune.scheduler="fifo"'],
                                              num_samples=3)
    watcher.join(timeout=5)
    assert first.interrupted, first.rows
    assert json.loads(SearchFolder(out).state.read_text())["status"] == "interrupted"
    done_before = {r["trial_id"]: (out / "trials" / r["trial_id"] / "summary.json").stat().st_mtime_ns
                   for r in first.rows if r["status"] == "finished"}
    assert 1 <= len(done_before) < 3, first.rows

    second = Search(out, progress=False).resume()
    assert not second.interrupted
    assert len(second.rows) == 3 and all(r["status"] == "finished" for r in second.rows), [(r["trial_id"], r["status"], r["epoch"], r["error"]) for r in second.rows]
    for trial_id, mtime in done_before.items():  # finished trials were not run again
        assert (out / "trials" / trial_id / "summary.json").stat().st_mtime_ns == mtime
    client = MlflowClient(mlflow_store)
    kids = children(client, second.parent_run_id)
    assert len(kids) == 3 and all(k.info.status == "FINISHED" for k in kids)
    for kid in kids:  # a trial cut mid-run continued its own child run: every epoch logged once
        steps = [m.step for m in client.get_metric_history(kid.info.run_id, "acc")]
        assert sorted(steps) == list(range(3)), (kid.info.run_id, steps)
    assert first.parent_run_id == second.parent_run_id
    assert client.get_run(second.parent_run_id).info.status == "FINISHED"
    assert (SearchFolder(out).best_recipe).is_file()


def test_trials_share_one_pretraining_and_one_feature_cache(tmp_path: Path, mlflow_store: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Two concurrent trials of a head-only search (the backbone's keys are not searched): the first pretrains
    and encodes the head-init's view copies, the other waits and reads both from the caches (counted by the
    cache files and each trial's tags)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("TOOLKIT_CACHE_DIR", str(cache))  # shipped to the trials by the driver
    space = ["tune.max_concurrent=2", 'tune.scheduler="fifo"', 'tune.search_alg="random"', "head_init.cached_views=2"]
    result = Search(tmp_path / "search", progress=False).start(BASELINE, TINY + space, num_samples=2)
    assert [r["status"] for r in result.rows] == ["finished", "finished"], result.rows
    assert len(list((cache / "backbones").glob("*.pt"))) == 1
    assert len(list((cache / "features").glob("*.pt"))) == 1
    kids = children(MlflowClient(mlflow_store), result.parent_run_id)
    assert sorted(k.data.tags["pretrain_cache"] for k in kids) == ["hit", "miss"]
    assert sorted(k.data.tags["feature_cache"] for k in kids) == ["0 read, 1 encoded", "1 read, 0 encoded"]

"""kill -9 during self-labeling, then `toolkit run --resume`: same metrics as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from toolkit.files import CheckpointError, load_safe

from conftest import RECIPES, toolkit_env

SETTINGS = ["pretrain.epochs=2", "pretrain.batch_size=256", "head_init.epochs=1", "head_init.nredo=1",
            "train.epochs=12", "model.hidden_dims=[32]"]


def command(out: Path, *extra: str, settings: list[str] = SETTINGS) -> list[str]:
    return [sys.executable, "-m", "toolkit.commands.app", "run", str(RECIPES / "baseline_digits.toml"),
            *[a for s in settings for a in ("--set", s)], "-o", str(out), "--device", "cpu", "--no-progress", *extra]


def kill_inside_stage(proc: subprocess.Popen, point: Path, at_least: int, total: int) -> int:
    """kill -9 `proc` once its stage resume point `point` holds an epoch >= `at_least`; returns the saved
    epoch, checked to be inside the stage (< `total`)."""
    deadline, epoch = time.time() + 300, 0
    while time.time() < deadline and epoch < at_least and proc.poll() is None:
        time.sleep(0.1)
        try:
            epoch = int(load_safe(point)["epoch"])
        except CheckpointError:
            epoch = 0  # not written yet (a half-written file is never visible: writes are atomic)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    epoch = int(load_safe(point)["epoch"])
    assert at_least <= epoch < total, f"the run was not killed inside the stage (saved epoch {epoch})"
    return epoch


def logged_epochs(store: str, out: Path, metric: str) -> list[int]:
    """Steps of `metric` in the MLflow run of `out` (a resumed run logs into the same run)."""
    from mlflow.tracking import MlflowClient

    run_id = json.loads((out / "summary.json").read_text())["mlflow_run_id"]
    return sorted(m.step for m in MlflowClient(store).get_metric_history(run_id, metric))


def metrics(out: Path) -> dict:
    summary = json.loads((out / "summary.json").read_text())
    return {k: v for k, v in summary.items() if isinstance(v, float) and k != "seconds"}


def test_kill_9_then_resume_matches_uninterrupted(tmp_path: Path, mlflow_store: str) -> None:
    env = toolkit_env(MLFLOW_TRACKING_URI=mlflow_store)
    full = tmp_path / "full"
    subprocess.run(command(full), env=env, check=True, capture_output=True, timeout=1800)

    out = tmp_path / "killed"
    proc = subprocess.Popen(command(out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    epoch = 0
    while time.time() < deadline and epoch < 2 and proc.poll() is None:
        time.sleep(0.2)
        try:
            epoch = int(load_safe(out / "checkpoints" / "last.pt")["epoch"])
        except CheckpointError:
            epoch = 0  # not written yet (a half-written file is never visible: writes are atomic)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "summary.json").exists()
    resumed = subprocess.run(command(out, "--resume"), env=env, capture_output=True, text=True, timeout=1800)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming after epoch" in resumed.stderr or load_safe(out / "checkpoints" / "last.pt")["epoch"] == 12
    assert metrics(out) == metrics(full)


def test_kill_9_during_pretraining_resumes_inside_the_stage(tmp_path: Path, mlflow_store: str) -> None:
    settings = ["pretrain.epochs=40", "pretrain.batch_size=256", "head_init.epochs=1", "head_init.nredo=1",
                "train.epochs=2", "model.hidden_dims=[32]"]

    def cmd(out: Path, *extra: str) -> list[str]:
        return [sys.executable, "-m", "toolkit.commands.app", "run", str(RECIPES / "baseline_digits.toml"),
                *[a for s in settings for a in ("--set", s)], "-o", str(out), "--device", "cpu", "--no-progress",
                *extra]

    def env(cache: str) -> dict[str, str]:  # separate caches: the resumed run must not find a finished backbone
        return toolkit_env(MLFLOW_TRACKING_URI=mlflow_store, TOOLKIT_CACHE_DIR=str(tmp_path / cache),
                           TOOLKIT_STAGE_CHECKPOINT_SECONDS="0")

    full = tmp_path / "full"
    subprocess.run(cmd(full), env=env("c1"), check=True, capture_output=True, timeout=1800)
    out = tmp_path / "killed"
    proc = subprocess.Popen(cmd(out), env=env("c2"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    epoch = kill_inside_stage(proc, out / "checkpoints" / "stages" / "pretrain.pt", 5, 40)
    assert not (out / "checkpoints" / "last.pt").exists()
    resumed = subprocess.run(cmd(out, "--resume"), env=env("c2"), capture_output=True, text=True, timeout=1800)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert metrics(out) == metrics(full)
    steps = logged_epochs(mlflow_store, out, "pretrain_loss")
    assert len(set(steps)) == 40
    # continued after the saved epoch: a restart from scratch would log the first `epoch` epochs twice
    assert len(steps) < 40 + epoch, (len(steps), epoch)


HEAD_INIT = ["pretrain.method=none", "head_init.epochs=80", "head_init.nredo=1", "train.epochs=1",
             "model.hidden_dims=[32]"]


def test_kill_9_during_head_init_resumes_inside_the_stage(tmp_path: Path, mlflow_store: str) -> None:
    """k-means pseudo-label head training: labels, head and optimizer come back; the epochs continue."""
    env = toolkit_env(MLFLOW_TRACKING_URI=mlflow_store, TOOLKIT_STAGE_CHECKPOINT_SECONDS="0")
    full = tmp_path / "full"
    subprocess.run(command(full, settings=HEAD_INIT), env=env, check=True, capture_output=True, timeout=1800)
    out = tmp_path / "killed"
    proc = subprocess.Popen(command(out, settings=HEAD_INIT), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    epoch = kill_inside_stage(proc, out / "checkpoints" / "stages" / "head_init.pt", 3, 80)
    resumed = subprocess.run(command(out, "--resume", settings=HEAD_INIT), env=env, capture_output=True, text=True,
                             timeout=1800)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert metrics(out) == metrics(full)
    steps = logged_epochs(mlflow_store, out, "head_init_loss")
    assert len(set(steps)) == 80
    assert len(steps) < 80 + epoch, (len(steps), epoch)  # a restart would log the first `epoch` epochs twice


MOCO = ("baseline_digits.toml", ["pretrain.method=mocov2", "pretrain.epochs=4", "pretrain.batch_size=256",
                                  "pretrain.queue_size=512", "pretrain.projection_hidden=64", "pretrain.projection_dim=16",
                                  "pretrain.warmup_epochs=1", "head_init.method=random", "train.epochs=1",
                                  "model.hidden_dims=[32]"], "pretrain")
DRC = ("drc_digits.toml", ["pretrain.epochs=4", "model.hidden_dims=[32]", "pretrain.aux_head=true"], "pretrain")
SPICE = ("spice_digits.toml", ["pretrain.method=none", "model.hidden_dims=[32]", "head_init.heads=2",
                               "head_init.epochs=4", "head_init.num_repeat=1", "train.epochs=1"], "head_init")


@pytest.mark.parametrize("recipe_name, settings, stage", [MOCO, DRC, SPICE], ids=["mocov2", "drc", "spice_prototype"])
def test_interrupted_in_a_stage_resumes_exactly(tmp_path: Path, mlflow_store: str, monkeypatch,  # type: ignore[no-untyped-def]
                                                recipe_name: str, settings: list[str], stage: str) -> None:
    from toolkit.run.engine import Engine
    from toolkit.run.events import Observer
    from toolkit.recipe.loading import load_recipe

    class StopInStage(Observer):
        def on_epoch_end(self, *, stage: str, epoch: int, metrics: dict, state: object) -> None:
            if stage == stop_stage and epoch == 2:
                raise KeyboardInterrupt

    stop_stage = stage

    monkeypatch.setenv("TOOLKIT_STAGE_CHECKPOINT_SECONDS", "0")
    monkeypatch.setenv("TOOLKIT_CACHE_DIR", str(tmp_path / "c1"))
    full = Engine(load_recipe(RECIPES / recipe_name, settings), tmp_path / "full", device="cpu").run()
    monkeypatch.setenv("TOOLKIT_CACHE_DIR", str(tmp_path / "c2"))
    out = tmp_path / "stopped"
    with pytest.raises(KeyboardInterrupt):
        Engine(load_recipe(RECIPES / recipe_name, settings), out, device="cpu",
               observers=[StopInStage()]).run()
    assert int(load_safe(out / "checkpoints" / "stages" / f"{stage}.pt")["epoch"]) == 1  # saved before epoch 2's event
    class Record(Observer):
        epochs: list[int] = []

        def on_epoch_end(self, *, stage: str, epoch: int, metrics: dict, state: object) -> None:
            if stage == stop_stage and "loss" in metrics:  # the plugin's own epochs, not published-label accuracy
                self.epochs.append(epoch)

    record = Record()
    resumed = Engine(load_recipe(RECIPES / recipe_name, settings), out, device="cpu", resume=True,
                     observers=[record]).run()
    assert record.epochs == [2, 3, 4]  # continued after the saved epoch 1, not restarted
    keys = [k for k, v in full.items() if isinstance(v, float) and k != "seconds"]
    assert {k: resumed[k] for k in keys} == {k: full[k] for k in keys}


CDC = ["pretrain.method=none", "model.hidden_dims=[32]", "model.head_hidden_dim=32", "head_init.nredo=1",
       "head_init.niter=10", "head_init.ortho_steps=30", "calibration.num_miniclusters=16",
       "calibration.kmeans_nredo=1", "train.epochs=1"]


def test_interrupted_in_prototype_separation_resumes_exactly(tmp_path: Path, mlflow_store: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """CDC prototype init: finished k-means phases are reused and the separation continues at its step."""
    import deepclust_cdc.head_init as cdc_head_init
    from toolkit.api.context import RunContext
    from toolkit.run.engine import Engine
    from toolkit.recipe.loading import load_recipe

    monkeypatch.setenv("TOOLKIT_STAGE_CHECKPOINT_SECONDS", "0")
    full = Engine(load_recipe(RECIPES / "cdc_digits.toml", CDC), tmp_path / "full", device="cpu").run()
    save_point = RunContext.save_point
    kept: list[tuple[str, int]] = []

    def stop_at_step_10(self: RunContext, stage: str, epoch: int, state: dict, final: bool = False) -> None:
        save_point(self, stage, epoch, state, final)
        part = state.get("separation")
        if part is not None:
            kept.append((part["layer"], part["step"]))
            if kept[-1] == ("first", 10):
                raise KeyboardInterrupt

    monkeypatch.setattr(RunContext, "save_point", stop_at_step_10)
    out = tmp_path / "stopped"
    with pytest.raises(KeyboardInterrupt):
        Engine(load_recipe(RECIPES / "cdc_digits.toml", CDC), out, device="cpu").run()
    kmeans_calls: list[int] = []
    prototypes = cdc_head_init.prototypes
    monkeypatch.setattr(cdc_head_init, "prototypes", lambda *a, **kw: kmeans_calls.append(1) or prototypes(*a, **kw))
    kept.clear()
    resumed = Engine(load_recipe(RECIPES / "cdc_digits.toml", CDC), out, device="cpu", resume=True).run()
    assert kmeans_calls == []  # both k-means phases were finished before the interruption
    assert kept[0] == ("first", 11)  # the separation continued after step 10, not from step 1
    keys = [k for k, v in full.items() if isinstance(v, float) and k != "seconds"]
    assert {k: resumed[k] for k in keys} == {k: full[k] for k in keys}


def test_resumed_summary_keeps_published_label_accuracies(tmp_path: Path, mlflow_store: str) -> None:
    """Pseudo-label accuracies published before an interruption (SPICE head-init, reliable labels)
    are part of the resumed run's summary, as in an uninterrupted run."""
    from toolkit.run.engine import Engine
    from toolkit.run.events import Observer
    from toolkit.recipe.loading import load_recipe

    settings = [s for s in SPICE[1] if not s.startswith("train.epochs")] + ["train.epochs=2"]

    class StopAfterFirstEpoch(Observer):
        def on_epoch_end(self, *, stage: str, epoch: int, metrics: dict, state: object) -> None:
            if stage == "self_label" and epoch == 1 and state is not None:
                raise KeyboardInterrupt

    recipe = RECIPES / SPICE[0]
    full = Engine(load_recipe(recipe, settings), tmp_path / "full", device="cpu").run()
    out = tmp_path / "stopped"
    with pytest.raises(KeyboardInterrupt):
        Engine(load_recipe(recipe, settings), out, device="cpu", observers=[StopAfterFirstEpoch()]).run()
    resumed = Engine(load_recipe(recipe, settings), out, device="cpu", resume=True).run()
    published = [k for k in full if k.endswith("_label_acc")]
    assert "head_init_prototype_label_acc" in published
    assert {k: resumed.get(k) for k in published} == {k: full[k] for k in published}


def test_resume_after_epoch_0_logs_each_step_once(tmp_path: Path, mlflow_store: str) -> None:
    """Epoch 0 (the head right after head-init) has no checkpoint, so a run stopped after logging it repeats
    it when resumed; its MLflow run must still hold every step once."""
    from toolkit.run.engine import Engine
    from toolkit.run.events import Observer
    from toolkit.recipe.loading import load_recipe
    from toolkit.track.tracker import MlflowTracker

    class StopAfterEpoch0(Observer):
        def on_epoch_end(self, *, stage: str, epoch: int, metrics: dict, state: object) -> None:
            if stage == "self_label" and epoch == 0:
                raise KeyboardInterrupt

    settings = [s for s in SETTINGS if not s.startswith("train.epochs")] + ["train.epochs=2"]
    recipe, out = RECIPES / "baseline_digits.toml", tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        Engine(load_recipe(recipe, settings), out, device="cpu", observers=[MlflowTracker(), StopAfterEpoch0()]).run()
    Engine(load_recipe(recipe, settings), out, device="cpu", observers=[MlflowTracker()], resume=True).run()
    assert logged_epochs(mlflow_store, out, "acc") == [0, 1, 2]
    assert logged_epochs(mlflow_store, out, "head_init_loss") == [1]  # head-init epochs count from 1

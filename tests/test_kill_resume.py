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

from toolkit.checkpoint import CheckpointError, load_safe

from conftest import RECIPES, toolkit_env

SETTINGS = ["pretrain.epochs=2", "pretrain.batch_size=256", "head_init.epochs=1", "head_init.nredo=1",
            "train.epochs=12", "model.hidden_dims=[32]"]


def command(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "toolkit.cli", "run", str(RECIPES / "baseline_digits.toml"),
            *[a for s in SETTINGS for a in ("--set", s)], "-o", str(out), "--device", "cpu", "--no-progress", *extra]


def metrics(out: Path) -> dict:
    summary = json.loads((out / "summary.json").read_text())
    return {k: v for k, v in summary.items() if isinstance(v, float) and k != "seconds"}


def test_kill_9_then_resume_matches_uninterrupted(tmp_path: Path, mlflow_store: str) -> None:
    env = toolkit_env(MLFLOW_TRACKING_URI=mlflow_store)
    full = tmp_path / "full"
    subprocess.run(command(full), env=env, check=True, capture_output=True, timeout=600)

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
    resumed = subprocess.run(command(out, "--resume"), env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming after epoch" in resumed.stderr or load_safe(out / "checkpoints" / "last.pt")["epoch"] == 12
    assert metrics(out) == metrics(full)


def test_kill_9_during_pretraining_resumes_inside_the_stage(tmp_path: Path, mlflow_store: str) -> None:
    from mlflow.tracking import MlflowClient

    settings = ["pretrain.epochs=40", "pretrain.batch_size=256", "head_init.epochs=1", "head_init.nredo=1",
                "train.epochs=2", "model.hidden_dims=[32]"]

    def cmd(out: Path, *extra: str) -> list[str]:
        return [sys.executable, "-m", "toolkit.cli", "run", str(RECIPES / "baseline_digits.toml"),
                *[a for s in settings for a in ("--set", s)], "-o", str(out), "--device", "cpu", "--no-progress",
                *extra]

    def env(cache: str) -> dict[str, str]:  # separate caches: the resumed run must not find a finished backbone
        return toolkit_env(MLFLOW_TRACKING_URI=mlflow_store, TOOLKIT_CACHE_DIR=str(tmp_path / cache),
                           TOOLKIT_STAGE_CHECKPOINT_SECONDS="0")

    full = tmp_path / "full"
    subprocess.run(cmd(full), env=env("c1"), check=True, capture_output=True, timeout=600)
    out = tmp_path / "killed"
    proc = subprocess.Popen(cmd(out), env=env("c2"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    point = out / "checkpoints" / "stages" / "pretrain.pt"
    deadline, epoch = time.time() + 300, 0
    while time.time() < deadline and epoch < 5 and proc.poll() is None:
        time.sleep(0.1)
        try:
            epoch = int(load_safe(point)["epoch"])
        except CheckpointError:
            epoch = 0
    assert proc.poll() is None and 5 <= epoch < 40, "the run was not killed during pretraining"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "checkpoints" / "last.pt").exists()
    resumed = subprocess.run(cmd(out, "--resume"), env=env("c2"), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert metrics(out) == metrics(full)
    run_id = json.loads((out / "summary.json").read_text())["mlflow_run_id"]
    steps = sorted(m.step for m in MlflowClient(mlflow_store).get_metric_history(run_id, "pretrain_loss"))
    assert len(set(steps)) == 40
    # continued after the saved epoch: a restart from scratch would log the first `epoch` epochs twice
    assert len(steps) < 40 + epoch, (len(steps), epoch)


MOCO = ("baseline_digits.toml", ["pretrain.method=mocov2", "pretrain.epochs=4", "pretrain.batch_size=256",
                                  "pretrain.queue_size=512", "pretrain.projection_hidden=64", "pretrain.projection_dim=16",
                                  "pretrain.warmup_epochs=1", "head_init.method=random", "train.epochs=1",
                                  "model.hidden_dims=[32]"])
DRC = ("drc_digits.toml", ["pretrain.epochs=4", "model.hidden_dims=[32]", "pretrain.aux_head=true"])


@pytest.mark.parametrize("recipe_name, settings", [MOCO, DRC], ids=["mocov2", "drc"])
def test_interrupted_in_pretraining_resumes_exactly(tmp_path: Path, mlflow_store: str, monkeypatch,  # type: ignore[no-untyped-def]
                                                    recipe_name: str, settings: list[str]) -> None:
    from toolkit.engine import Engine
    from toolkit.events import Observer
    from toolkit.recipe import load_recipe

    class StopInPretrain(Observer):
        def on_epoch_end(self, *, stage: str, epoch: int, metrics: dict, state: object) -> None:
            if stage == "pretrain" and epoch == 2:
                raise KeyboardInterrupt

    monkeypatch.setenv("TOOLKIT_STAGE_CHECKPOINT_SECONDS", "0")
    monkeypatch.setenv("TOOLKIT_CACHE_DIR", str(tmp_path / "c1"))
    full = Engine(load_recipe(RECIPES / recipe_name, settings), tmp_path / "full", device="cpu").run()
    monkeypatch.setenv("TOOLKIT_CACHE_DIR", str(tmp_path / "c2"))
    out = tmp_path / "stopped"
    with pytest.raises(KeyboardInterrupt):
        Engine(load_recipe(RECIPES / recipe_name, settings), out, device="cpu",
               observers=[StopInPretrain()]).run()
    assert int(load_safe(out / "checkpoints" / "stages" / "pretrain.pt")["epoch"]) == 1  # saved before epoch 2's event
    class Record(Observer):
        epochs: list[int] = []

        def on_epoch_end(self, *, stage: str, epoch: int, metrics: dict, state: object) -> None:
            if stage == "pretrain":
                self.epochs.append(epoch)

    record = Record()
    resumed = Engine(load_recipe(RECIPES / recipe_name, settings), out, device="cpu", resume=True,
                     observers=[record]).run()
    assert record.epochs == [2, 3, 4]  # continued after the saved epoch 1, not restarted
    keys = [k for k, v in full.items() if isinstance(v, float) and k != "seconds"]
    assert {k: resumed[k] for k in keys} == {k: full[k] for k in keys}

"""kill -9 during self-labeling, then `toolkit run --resume`: same metrics as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

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

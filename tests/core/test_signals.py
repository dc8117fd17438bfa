"""SIGTERM (a scheduler's pre-emption) and SIGINT stop `toolkit run` cleanly: run state "interrupted",
MLflow run KILLED, one line on how to continue, exit code 128 + signal; `--resume` then finishes with the
metrics of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
from mlflow.tracking import MlflowClient

from toolkit.files import CheckpointError, load_safe
from toolkit.run.folder import RunFolder
from toolkit.run.interrupt import Interrupted, deferred, interrupt_on_signals
from toolkit.track.records import error_status

from conftest import RECIPES, toolkit_env

HANG_GUARD = 1800  # seconds: only a hung run ever gets near it
EPOCHS = 80  # ~50 ms each on a quiet CPU: the signal (sent after epoch 2) lands seconds before the end
SETTINGS = ["pretrain.epochs=2", "pretrain.batch_size=256", "head_init.epochs=1", "head_init.nredo=1",
            f"train.epochs={EPOCHS}", "model.hidden_dims=[32]"]


def command(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "toolkit.commands.app", "run", str(RECIPES / "baseline_digits.toml"),
            *[a for s in SETTINGS for a in ("--set", s)], "-o", str(out), "--device", "cpu", "--no-progress", *extra]


def start(cmd: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    # SIGINT as in a terminal, even when the test runner was started with it ignored (a background job)
    return subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def signal_after_epochs(proc: subprocess.Popen[str], checkpoint: Path, signum: int, at_least: int = 2) -> str:
    """Send `signum` once `checkpoint` holds a finished self-labeling epoch >= `at_least`; returns stderr."""
    deadline, epoch = time.time() + HANG_GUARD, 0
    while time.time() < deadline and epoch < at_least and proc.poll() is None:
        time.sleep(0.1)
        try:
            epoch = int(load_safe(checkpoint)["epoch"])
        except CheckpointError:
            epoch = 0  # not written yet (writes are atomic: never half a file)
    assert proc.poll() is None, "the run finished before it could be interrupted"
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=HANG_GUARD)
    return stderr


def metrics(out: Path) -> dict[str, float]:
    summary = json.loads(RunFolder(out).summary.read_text())
    return {k: v for k, v in summary.items() if isinstance(v, float) and k != "seconds"}


def state(folder: RunFolder) -> dict:
    return json.loads(folder.state.read_text())


def assert_one_line_how_to_continue(stderr: str, signame: str, out: Path, *flags: str) -> None:
    assert "Traceback" not in stderr, stderr[-3000:]
    # the run's own warnings (a reused cached backbone) print as lines of their own before it
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith("warning: ")]
    assert len(lines) == 1, stderr[-3000:]
    assert lines[0].startswith(f"interrupted by {signame}: continue with `toolkit run ")
    for fragment in (*flags, f"--resume --output-dir {out}`"):
        assert fragment in lines[0], (fragment, lines[0])


def test_sigterm_records_interruption_and_resume_matches_uninterrupted(tmp_path: Path, mlflow_store: str) -> None:
    env = toolkit_env(MLFLOW_TRACKING_URI=mlflow_store)
    full = tmp_path / "full"
    subprocess.run(command(full), env=env, cwd=tmp_path, check=True, capture_output=True, timeout=HANG_GUARD)

    out = tmp_path / "preempted"
    folder = RunFolder(out)
    proc = start(command(out), env, tmp_path)
    stderr = signal_after_epochs(proc, folder.last_checkpoint, signal.SIGTERM)
    assert proc.returncode == 143, stderr[-3000:]
    assert_one_line_how_to_continue(stderr, "SIGTERM", out, "--set 'model.hidden_dims=[32]'", "--device cpu")
    assert state(folder)["status"] == "interrupted"
    assert int(load_safe(folder.last_checkpoint)["epoch"]) < EPOCHS  # stopped inside self-labeling
    assert not folder.summary.exists() and not folder.traceback.exists()  # not finished, not failed
    client = MlflowClient(mlflow_store)
    run_id = state(folder)["mlflow_run_id"]
    run = client.get_run(run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags["error"] == "Interrupted: SIGTERM"

    resumed = subprocess.run(command(out, "--resume"), env=env, cwd=tmp_path, capture_output=True, text=True,
                             timeout=HANG_GUARD)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert state(folder)["status"] == "finished"
    assert client.get_run(run_id).info.status == "FINISHED"  # the same MLflow run, continued
    assert json.loads(folder.summary.read_text())["mlflow_run_id"] == run_id
    assert metrics(out) == metrics(full)


def test_sigint_stops_a_multi_seed_run_with_130_and_it_resumes(tmp_path: Path, mlflow_store: str) -> None:
    env = toolkit_env(MLFLOW_TRACKING_URI=mlflow_store)
    out = tmp_path / "seeds"
    root = RunFolder(out)
    proc = start(command(out, "--seeds", "0,1"), env, tmp_path)
    stderr = signal_after_epochs(proc, root.seed(0).last_checkpoint, signal.SIGINT)
    assert proc.returncode == 130, stderr[-3000:]
    assert_one_line_how_to_continue(stderr, "SIGINT", out, "--seeds 0,1")
    assert state(root.seed(0))["status"] == "interrupted"
    assert not root.seed(1).root.exists()  # never started
    client = MlflowClient(mlflow_store)
    seed_run = state(root.seed(0))["mlflow_run_id"]
    parent = json.loads(root.seeds_state.read_text())["parent_run_id"]
    assert client.get_run(seed_run).info.status == "KILLED"
    assert client.get_run(parent).info.status == "KILLED"

    resumed = subprocess.run(command(out, "--seeds", "0,1", "--resume"), env=env, cwd=tmp_path, capture_output=True,
                             text=True, timeout=HANG_GUARD)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [state(root.seed(s))["status"] for s in (0, 1)] == ["finished", "finished"]
    assert client.get_run(seed_run).info.status == "FINISHED"
    assert client.get_run(parent).info.status == "FINISHED"
    assert root.seeds_summary.is_file()


def _wait_for_signal() -> None:
    """Python runs a handler between bytecodes of the main thread: give it a few."""
    for _ in range(100):
        time.sleep(0.01)


def test_signal_raises_interrupted_once_and_handlers_come_back() -> None:
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with pytest.raises(Interrupted) as info:
        with interrupt_on_signals():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                _wait_for_signal()
            except Interrupted:
                os.kill(os.getpid(), signal.SIGTERM)  # a second signal while shutting down: only a note
                _wait_for_signal()
                raise
    assert info.value.signum == signal.SIGTERM and info.value.exit_code == 143
    assert isinstance(info.value, KeyboardInterrupt) and error_status(info.value) == "KILLED"
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


@pytest.fixture
def sigint_handled() -> Iterator[None]:
    """SIGINT as in a terminal, even when the test runner was started with it ignored (a background job)."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


def test_signal_inside_an_observer_call_waits_for_its_end(sigint_handled: None) -> None:
    finished = []
    with pytest.raises(Interrupted) as info:
        with interrupt_on_signals():
            with deferred():
                os.kill(os.getpid(), signal.SIGINT)
                _wait_for_signal()
                finished.append(True)  # reached: the write in here is not cut in half
    assert finished == [True] and info.value.exit_code == 130

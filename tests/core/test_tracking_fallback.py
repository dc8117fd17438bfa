"""`--tracking-fallback local`: an unreachable MLflow server no longer stops the run; it logs to
OUTPUT_DIR/mlflow.db and says so in one line. Without the option it still fails fast (exit 2)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from toolkit.errors import UserError
from toolkit.track.fallback import FALLBACK_ENV, fallback_mode, resolve_store

from conftest import RECIPES, toolkit_env

TINY = ["pretrain.method=none", "head_init.epochs=1", "head_init.nredo=1", "train.epochs=2", "model.hidden_dims=[32]"]


def dead_server() -> str:
    """An http URI on a local port nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_unreachable_server_logs_the_run_in_its_output_folder(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "toolkit.commands.app", "run", str(RECIPES / "baseline_digits.toml"),
           *[a for s in TINY for a in ("--set", s)], "-o", str(out), "--device", "cpu", "--no-progress",
           "--tracking-fallback", "local"]
    proc = subprocess.run(cmd, env=toolkit_env(MLFLOW_TRACKING_URI=dead_server()), cwd=tmp_path, capture_output=True,
                          text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-2000:]
    store = f"sqlite:///{out.resolve() / 'mlflow.db'}"
    notices = [line for line in proc.stderr.splitlines() if "unreachable" in line]
    assert len(notices) == 1, proc.stderr
    assert str(out.resolve() / "mlflow.db") in notices[0] and f"MLFLOW_TRACKING_URI={store} toolkit ui" in notices[0]
    summary = json.loads((out / "summary.json").read_text())
    run = MlflowClient(store).get_run(summary["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.metrics["acc"] == pytest.approx(summary["acc"])
    assert sorted(m.step for m in MlflowClient(store).get_metric_history(run.info.run_id, "acc")) == [0, 1, 2]
    assert not (tmp_path / "mlruns").exists()  # nothing went to the default store either


def test_resolve_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dead, said = dead_server(), []
    local = f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    assert resolve_store("sqlite:///x.db", None, "local", tmp_path, notify=said.append) == ("sqlite:///x.db", None)
    with pytest.raises(UserError, match="unreachable.*--tracking-fallback local"):
        resolve_store(dead, None, "fail", tmp_path, notify=said.append)
    assert said == []
    assert resolve_store(dead, None, "local", tmp_path, notify=said.append)[0] == local
    assert len(said) == 1 and "unreachable" in said[0]
    (tmp_path / "mlflow.db").touch()  # a run that fell back keeps its folder's store when resumed
    assert resolve_store("sqlite:///x.db", None, "local", tmp_path, resuming=True, notify=said.append)[0] == local
    assert "resuming in the local MLflow store" in said[-1]
    monkeypatch.setenv(FALLBACK_ENV, "local")
    assert fallback_mode(None) == "local" and fallback_mode("fail") == "fail"
    monkeypatch.setenv(FALLBACK_ENV, "maybe")
    with pytest.raises(UserError, match=FALLBACK_ENV):
        fallback_mode(None)

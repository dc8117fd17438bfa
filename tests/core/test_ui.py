"""`toolkit ui` serves the MLflow UI for the tracking store on 127.0.0.1."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import RECIPES, ROOT, toolkit_env

BROWSER = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_ui_serves_the_store(tmp_path: Path, mlflow_store: str) -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "toolkit.commands.app", "ui", "--port", str(port)], cwd=tmp_path,
                            env=toolkit_env(MLFLOW_TRACKING_URI=mlflow_store), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 90
        status = None
        while time.time() < deadline and status is None:
            if proc.poll() is not None:
                raise AssertionError(proc.stdout.read().decode()[-2000:])
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
                    status = resp.status
            except OSError:
                time.sleep(0.5)
        assert status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
            assert b"MLflow" in resp.read() or resp.status == 200
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def _serve(tmp_path: Path, store: str, port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "toolkit.commands.app", "ui", "--port", str(port)], cwd=tmp_path,
                            env=toolkit_env(MLFLOW_TRACKING_URI=store), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(proc.stdout.read()[-2000:])
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return proc
        except OSError:
            time.sleep(0.5)
    raise AssertionError("toolkit ui did not answer within 120 s")


@pytest.mark.skipif(BROWSER is None, reason="no Chromium here (Debian: apt-get install chromium)")
def test_ui_link_opens_the_runs_in_a_real_browser(tmp_path: Path, mlflow_store: str) -> None:
    """The link `toolkit ui` prints for an experiment shows its runs table (model-training view, not the
    GenAI traces page), with the run's informative name, its data set input and its description."""
    run = subprocess.run([sys.executable, "-m", "toolkit.commands.app", "run", str(RECIPES / "drc_digits.toml"),
                          "--no-progress", "-o", str(tmp_path / "run"), "--set", "pretrain.epochs=2",
                          "--set", "model.hidden_dims=[32]"], cwd=tmp_path, capture_output=True, text=True,
                         env=toolkit_env(MLFLOW_TRACKING_URI=mlflow_store), timeout=1800)
    assert run.returncode == 0, run.stderr[-2000:]
    port = free_port()
    proc = _serve(tmp_path, mlflow_store, port)
    try:
        printed = ""
        deadline = time.time() + 30
        while "drc_digits: http" not in printed and time.time() < deadline:
            printed += proc.stdout.readline()
        link = re.search(r"drc_digits: (http\S+)", printed)
        assert link and "workflowType=machine_learning" in link.group(1), printed
        dom = subprocess.run([BROWSER, "--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,900",
                              "--virtual-time-budget=30000", "--dump-dom", link.group(1)],
                             capture_output=True, text=True, timeout=600).stdout
        assert "drc_digits-s0 epochs=2,hidden_dims=[32]" in dom  # the runs table, with the informative name
        assert "Run Name" in dom and "digits" in dom
        assert "trained end to end with L_AF" in dom  # the recipe's description
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)

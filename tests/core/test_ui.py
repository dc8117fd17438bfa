"""`toolkit ui` serves the MLflow UI for the tracking store on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from conftest import ROOT, toolkit_env


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

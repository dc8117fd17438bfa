"""`toolkit ui` serves the MLflow UI for the tracking store on 127.0.0.1."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from conftest import toolkit_env

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


def _dom(url: str) -> str:
    """The page as a real headless Chromium renders it after its scripts ran."""
    return subprocess.run([BROWSER, "--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,900",
                           "--virtual-time-budget=30000", "--dump-dom", url],
                          capture_output=True, text=True, timeout=600).stdout


@pytest.mark.skipif(BROWSER is None, reason="no Chromium here (Debian: apt-get install chromium)")
@pytest.mark.xdist_group("seeds_store")
def test_ui_shows_runs_and_compares_them_in_a_real_browser(tmp_path: Path, seeds_store: dict) -> None:
    """The link `toolkit ui` prints for an experiment shows its runs table (model-training view, not the GenAI
    traces page) with the seeds' informative names, the parent, the data set and the description; the compare
    page of two seeds shows both runs, their params and the reliability diagram artifact."""
    from mlflow.tracking import MlflowClient

    store = seeds_store["uri"]
    port = free_port()
    proc = _serve(tmp_path, store, port)
    try:
        printed = ""
        deadline = time.time() + 30
        while "drc_digits: http" not in printed and time.time() < deadline:
            printed += proc.stdout.readline()
        link = re.search(r"drc_digits: (http\S+)", printed)
        assert link and "workflowType=machine_learning" in link.group(1), printed
        dom = _dom(link.group(1))
        assert "Run Name" in dom and "digits" in dom  # the runs table, not the traces overview
        # the seeds' parent, named with the overrides its children share (the children fold under it)
        assert "drc_digits-seeds-0,1,2 epochs=2,hidden_dims=[32, 32],aux_head=false" in dom
        assert "trained end to end with L_AF" in dom  # the recipe's description
        client = MlflowClient(tracking_uri=store)
        parent = client.get_run(seeds_store["parents"][0])
        children = client.search_runs([parent.info.experiment_id],
                                      f"tags.mlflow.parentRunId = '{parent.info.run_id}'", order_by=["attributes.run_name"])
        ids = [r.info.run_id for r in children[:2]]
        runs = urllib.parse.quote(json.dumps(ids))
        compare = _dom(f"http://127.0.0.1:{port}/#/compare-runs?runs={runs}"
                       f"&experiments={urllib.parse.quote(json.dumps([parent.info.experiment_id]))}")
        for run in children[:2]:
            assert run.info.run_name in compare
        assert "train.lr" in compare and "data.num_images" in compare  # params side by side
        assert "reliability.png" in compare  # the artifact both runs share, comparable there
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)

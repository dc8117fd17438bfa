"""`toolkit ui`: MLflow's UI for the tracking store, opened where a researcher wants it and run lean.

MLflow 3 opens an experiment (`#/experiments/<id>`) in its GenAI view (an empty traces overview, a pop-up)
unless the URL or the browser's stored choice says `workflowType=machine_learning`; so the links printed
here carry it, one per experiment with runs (checked in Chromium: tests/core/test_ui.py). Its job-execution workers (a Huey consumer pool for GenAI jobs) are switched off
unless the user set MLFLOW_SERVER_ENABLE_JOB_EXECUTION: the runs view renders the same without them, with
3 processes instead of 11 (measured with `ps` while serving a store of toolkit runs).
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any, Callable

from toolkit.track.store import tracking_uri

#: The UI's query parameter choosing the model-training view over the GenAI one.
VIEW = "workflowType=machine_learning"


def ui_links(client: Any, base: str) -> list[tuple[str, str]]:
    """(experiment name, URL of its runs in the model-training view) for every experiment holding runs."""
    links = [("all experiments", f"{base}/#/experiments?{VIEW}")]
    for exp in client.search_experiments():
        if client.search_runs([exp.experiment_id], max_results=1):
            links.append((exp.name, f"{base}/#/experiments/{exp.experiment_id}?{VIEW}"))
    return links


def server_command(uri: str, artifacts: str | None, host: str, port: int) -> list[str]:
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port),
           "--workers", "1"]
    if artifacts:
        cmd += ["--default-artifact-root", artifacts]
    return cmd


def serve(host: str, port: int, say: Callable[[str], None]) -> None:
    """Print the links, then run the MLflow server until Ctrl-C; exits with the server's code."""
    import typer

    from toolkit.track.store import open_client

    uri, artifacts = tracking_uri()
    base = f"http://{host}:{port}"
    say(f"MLflow UI for {uri} at {base} (Ctrl-C stops it); runs of each experiment:")
    for name, url in ui_links(open_client(uri), base):
        say(f"  {name}: {url}")
    env = {**os.environ}
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    try:
        raise typer.Exit(code=subprocess.call(server_command(uri, artifacts, host, port), env=env))
    except KeyboardInterrupt:
        raise typer.Exit(code=0) from None

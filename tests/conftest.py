"""Shared fixtures: a real SQLite MLflow store and a backbone cache, both in temp folders."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterator

import pytest

# Under pytest-xdist each worker (and every process it starts) uses one OpenMP thread: two workers with two
# threads each would oversubscribe the two cores the suite is budgeted for. Set before anything imports torch.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"


@pytest.fixture()
def mlflow_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """MLFLOW_TRACKING_URI pointing at a fresh SQLite file; returns the URI."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test session gets its own backbone cache (never the user's ~/.cache)."""
    monkeypatch.setenv("TOOLKIT_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    """One local Ray instance (2 CPUs) for every search test: starting Ray costs seconds each time."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    yield
    ray.shutdown()


def toolkit_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    env.setdefault("COLUMNS", "200")
    return env


#: Two recipes cut to seconds: what `seeds_store` runs.
SEEDS_STORE_RUNS = {
    "drc_digits": ["pretrain.epochs=2", "model.hidden_dims=[32, 32]", "pretrain.aux_head=false"],
    "baseline_digits": ["pretrain.epochs=2", "model.hidden_dims=[32]", "head_init.epochs=2", "train.epochs=2"],
}


@pytest.fixture(scope="session")
def seeds_store(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A real SQLite MLflow store holding `toolkit run --seeds 0,1,2` of two tiny recipes (six runs under two
    parents): {"uri", "accs": {recipe: [acc per seed]}, "parents": [run ids]}. Session-scoped (tests that use it
    share one xdist group), since the runs take a minute."""
    import json
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("seeds-store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    out: dict = {"uri": uri, "accs": {}, "parents": []}
    for name, overrides in SEEDS_STORE_RUNS.items():
        args = [sys.executable, "-m", "toolkit.commands.app", "run", str(RECIPES / f"{name}.toml"), "--seeds", "0,1,2",
                "-o", str(root / name), "--no-progress", "--device", "cpu", *sum((["--set", o] for o in overrides), [])]
        proc = subprocess.run(args, cwd=root, capture_output=True, text=True, timeout=1800,
                              env=toolkit_env(MLFLOW_TRACKING_URI=uri, TOOLKIT_SYSTEM_METRICS="0",
                                              # set here: a session fixture starts before the per-test isolation
                                              TOOLKIT_CACHE_DIR=str(tmp_path_factory.getbasetemp() / "cache")))
        assert proc.returncode == 0, proc.stderr[-3000:]
        summary = json.loads((root / name / "seeds_summary.json").read_text())
        out["accs"][name] = [summary["per_seed"][str(s)]["acc"] for s in (0, 1, 2)]
        out["parents"].append(summary["parent_run_id"])
    return out

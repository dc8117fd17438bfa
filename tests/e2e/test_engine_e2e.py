"""End to end on real data (sklearn digits): CLI run, MLflow contents, cache, determinism, resume."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from sklearn.datasets import load_digits

from toolkit.run.engine import Engine
from toolkit.run.events import Observer
from toolkit.metrics import cluster_acc
from toolkit.ops.kmeans import kmeans
from toolkit.recipe.loading import load_recipe

from conftest import RECIPES, ROOT, toolkit_env

BASELINE = RECIPES / "baseline_digits.toml"
QUICK = ["head_init.epochs=5", "train.epochs=3"]  # full 300-epoch SimCLR (~30 s): short runs vary too much
TINY = ["pretrain.epochs=3", "pretrain.batch_size=256", "head_init.epochs=1", "head_init.nredo=1", "train.epochs=4",
        "model.hidden_dims=[64, 64]"]


def run_cli(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "toolkit.commands.app", *args], capture_output=True, text=True, cwd=cwd,
                          env=toolkit_env(**env), timeout=1800)  # a hang guard only


def kmeans_raw_pixel_acc() -> float:
    digits = load_digits()
    result = kmeans(digits.data.astype(np.float32), 10, nredo=5, seed=0)
    return cluster_acc(result.labels, digits.target)


def test_run_on_digits_end_to_end(tmp_path: Path, mlflow_store: str) -> None:
    out = tmp_path / "run"
    # One thread, like every process of the suite (two on two busy cores more than doubled this test's time).
    # The thread count changes the float path of pretraining and so the k-means mode one short run lands in:
    # measured 2026-12-03, seed 0 reaches 0.836 on one thread (k-means on the pixels: 0.794).
    proc = run_cli(["run", str(BASELINE), *sum((["--set", s] for s in QUICK), []), "--output-dir", str(out),
                    "--device", "cpu"], tmp_path, MLFLOW_TRACKING_URI=mlflow_store, OMP_NUM_THREADS="1",
                   MKL_NUM_THREADS="1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "acc" in proc.stdout and "mlflow_run_id" in proc.stdout  # the results table
    summary = json.loads((out / "summary.json").read_text())
    for key in ("acc", "nmi", "ari", "ece", "seconds", "device", "mlflow_run_id"):
        assert key in summary, key
    for key in ("acc", "nmi", "ari", "ece"):
        assert 0.0 <= summary[key] <= 1.0
    assert summary["device"] == "cpu" and summary["protocol"] == "transductive"
    baseline = kmeans_raw_pixel_acc()
    assert summary["acc"] > baseline, (summary["acc"], baseline)

    client = MlflowClient(mlflow_store)
    run = client.get_run(summary["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["train.epochs"] == "3" and run.data.params["pretrain.method"] == "simclr"
    assert run.data.tags["plugin.selection"] == "threshold"
    assert run.data.tags["pkg.selection"].startswith("deepclust-baseline ")
    assert run.data.tags["protocol"] == "transductive"
    acc_history = client.get_metric_history(run.info.run_id, "acc")
    assert sorted(m.step for m in acc_history) == [0, 1, 2, 3]
    for name in ("loss", "loss_cluster", "ece", "nmi", "ari", "selected_fraction", "pseudo_label_acc"):
        assert len(client.get_metric_history(run.info.run_id, name)) >= 3, name
    assert len(client.get_metric_history(run.info.run_id, "pretrain_loss")) == 300
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"recipe.toml", "summary.json", "reliability.png", "confusion.png", "checkpoints"} <= artifacts
    assert [a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")] == ["checkpoints/final.pt"]

    # Changing only a later stage reuses the cached backbone instead of pretraining again.
    out2 = tmp_path / "run2"
    proc2 = run_cli(["run", str(BASELINE), *sum((["--set", s] for s in QUICK[:1] + ["train.epochs=1"]), []),
                     "-o", str(out2), "--no-progress"], tmp_path, MLFLOW_TRACKING_URI=mlflow_store)
    assert proc2.returncode == 0, proc2.stderr[-3000:]
    second = client.get_run(json.loads((out2 / "summary.json").read_text())["mlflow_run_id"])
    assert second.data.tags["pretrain_cache"] == "hit"
    assert run.data.tags["pretrain_cache"] == "miss"
    assert client.get_metric_history(second.info.run_id, "pretrain_loss") == []


def _run(out: Path, overrides: list[str], observers: list[Observer] | None = None, resume: bool = False) -> dict:
    from toolkit.track.tracker import MlflowTracker

    recipe = load_recipe(BASELINE, overrides)
    return Engine(recipe, out, device="cpu", observers=[MlflowTracker(), *(observers or [])], resume=resume).run()


def _metrics(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if isinstance(v, float) and k != "seconds"}


def test_same_seed_same_metrics(tmp_path: Path, mlflow_store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOOLKIT_CACHE_DIR", str(tmp_path / "cache_a"))
    a = _run(tmp_path / "a", TINY)
    monkeypatch.setenv("TOOLKIT_CACHE_DIR", str(tmp_path / "cache_b"))  # pretrain again, not from the cache
    b = _run(tmp_path / "b", TINY)
    assert _metrics(a) == _metrics(b)
    c = _run(tmp_path / "c", TINY + ["experiment.seed=1"])
    assert _metrics(c) != _metrics(a)


class StopAfter(Observer):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, *, stage: str, epoch: int, metrics: dict, state: object) -> None:
        if stage == "self_label" and epoch == self.epoch:
            raise KeyboardInterrupt


def test_resume_continues_and_matches_uninterrupted(tmp_path: Path, mlflow_store: str) -> None:
    full = _run(tmp_path / "full", TINY)
    out = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        _run(out, TINY, [StopAfter(2)])
    state = json.loads((out / "run_state.json").read_text())
    client = MlflowClient(mlflow_store)
    assert client.get_run(state["mlflow_run_id"]).info.status == "KILLED"
    resumed = _run(out, TINY, resume=True)
    assert resumed["mlflow_run_id"] == state["mlflow_run_id"]
    assert _metrics(resumed) == _metrics(full)
    assert client.get_run(state["mlflow_run_id"]).info.status == "FINISHED"
    steps = sorted(m.step for m in client.get_metric_history(state["mlflow_run_id"], "loss"))
    assert steps == [1, 2, 3, 4]  # epochs 1-2 before the interruption, 3-4 after; none twice


def test_image_folder_of_another_size_runs_with_a_digits_recipe(tmp_path: Path, mlflow_store: str) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    for c in range(3):
        (root / f"class_{c}").mkdir(parents=True)
        for i in range(20):
            img = np.zeros((12, 12, 3), dtype=np.uint8)
            img[:, c * 4:(c + 1) * 4] = 200
            img = np.clip(img + rng.integers(0, 40, img.shape), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / f"class_{c}" / f"{i}.png")
    out = tmp_path / "run"
    proc = run_cli(["run", str(BASELINE), "--set", "data.dataset=image_folder", "--set", f"data.root={root}",
                    *sum((["--set", s] for s in TINY), []), "-o", str(out), "--no-progress"], tmp_path,
                   MLFLOW_TRACKING_URI=mlflow_store)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_clusters"] == 3 and summary["n_train"] == 60
    assert 0.0 <= summary["acc"] <= 1.0

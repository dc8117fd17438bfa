"""Oracle flag, protocols, unlabeled data, `toolkit predict`, and timm backbones, end to end."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from conftest import RECIPES, toolkit_env

BASELINE = RECIPES / "baseline_digits.toml"
TINY = ["pretrain.epochs=2", "pretrain.batch_size=256", "head_init.epochs=1", "head_init.nredo=1", "train.epochs=1",
        "model.hidden_dims=[32]"]


def toolkit(args: list[str], cwd: Path, uri: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "toolkit.commands.app", *args], capture_output=True, text=True, cwd=cwd,
                          env=toolkit_env(MLFLOW_TRACKING_URI=uri, **env), timeout=1800)


def sets(items: list[str]) -> list[str]:
    return [a for s in items for a in ("--set", s)]


def write_images(folder: Path, n: int, size: int, classes: int | None = None) -> None:
    rng = np.random.default_rng(1)
    for i in range(n):
        target = folder / f"c{i % classes}" if classes else folder
        target.mkdir(parents=True, exist_ok=True)
        img = rng.integers(0, 255, (size, size), dtype=np.uint8)
        Image.fromarray(img).save(target / f"img_{i:03d}.png")


pytestmark = pytest.mark.xdist_group("honest_eval")  # one worker: the plain run below is made once


@pytest.fixture(scope="session")  # not "module": xdist interleaves other modules' tests, which would end it
def plain(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One plain TINY run (transductive, no oracle) in its own store, shared by the tests that compare with it
    or predict from it (read only): {"out", "stdout", "uri"}."""
    root = tmp_path_factory.mktemp("plain")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    # a session fixture starts before the per-test cache isolation: name the session's cache itself
    cache = str(tmp_path_factory.getbasetemp() / "cache")
    proc = toolkit(["run", str(BASELINE), *sets(TINY), "-o", str(root / "run")], root, uri, TOOLKIT_CACHE_DIR=cache)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {"out": root / "run", "stdout": proc.stdout, "uri": uri}


def test_oracle_flag_reaches_every_output(tmp_path: Path, mlflow_store: str, plain: dict) -> None:
    out = tmp_path / "run"
    proc = toolkit(["run", str(BASELINE), *sets(TINY + ["experiment.oracle=true"]), "-o", str(out)], tmp_path,
                   mlflow_store)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ORACLE" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["oracle"] is True
    assert MlflowClient(mlflow_store).get_run(summary["mlflow_run_id"]).data.tags["oracle"] == "true"
    assert "ORACLE" not in plain["stdout"]
    assert json.loads((plain["out"] / "summary.json").read_text())["oracle"] is False


def test_split_protocol_reports_on_the_test_part(tmp_path: Path, mlflow_store: str, plain: dict) -> None:
    out = tmp_path / "run"
    proc = toolkit(["run", str(BASELINE), *sets(TINY + ["experiment.protocol=split"]), "-o", str(out)], tmp_path,
                   mlflow_store)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["n_train"], summary["n_eval"]) == (1438, 359)
    assert summary["protocol"] == "split" and "protocol split" in proc.stdout
    assert len(np.load(out / "predictions.npy")) == 359
    summary_t = json.loads((plain["out"] / "summary.json").read_text())
    assert (summary_t["n_train"], summary_t["n_eval"]) == (1797, 1797)


def test_unlabeled_folder_trains_and_predicts_without_metrics(tmp_path: Path, mlflow_store: str) -> None:
    images = tmp_path / "flat"
    write_images(images, 48, 10)
    out = tmp_path / "run"
    proc = toolkit(["run", str(BASELINE), *sets(TINY + ["data.dataset=image_folder", f"data.root={images}",
                                                        "data.num_clusters=3"]), "-o", str(out)], tmp_path, mlflow_store)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["evaluated"] is False and summary["acc"] is None and "no labels" in summary["note"]
    assert 0.0 <= summary["mean_confidence"] <= 1.0
    assert not (out / "confusion.png").exists()
    missing_k = toolkit(["run", str(BASELINE), *sets(TINY + ["data.dataset=image_folder", f"data.root={images}"]),
                         "-o", str(tmp_path / "nok")], tmp_path, mlflow_store)
    assert missing_k.returncode == 2 and "[data] num_clusters" in missing_k.stderr


def test_predict_on_a_folder_and_by_run_id(tmp_path: Path, plain: dict) -> None:
    out, mlflow_store = plain["out"], plain["uri"]
    new = tmp_path / "new"
    write_images(new, 25, 12)  # another size than the 8x8 training images: resized
    csv_path = tmp_path / "p.csv"
    proc = toolkit(["predict", str(out), str(new), "--output", str(csv_path), "--grid", str(tmp_path / "grid")],
                   tmp_path, mlflow_store)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = list(csv.DictReader(csv_path.open()))
    assert len(rows) == 25 and {r["image"] for r in rows} == {f"img_{i:03d}.png" for i in range(25)}
    assert all(0 <= int(r["cluster"]) < 10 and 0.0 < float(r["confidence"]) <= 1.0 for r in rows)
    grids = sorted((tmp_path / "grid").glob("cluster_*.png"))
    assert len(grids) == len({r["cluster"] for r in rows})
    run_id = json.loads((out / "summary.json").read_text())["mlflow_run_id"]
    by_id = toolkit(["predict", run_id, "--output", str(tmp_path / "all.csv")], tmp_path, mlflow_store)
    assert by_id.returncode == 0, by_id.stderr[-2000:]
    rows = list(csv.DictReader((tmp_path / "all.csv").open()))
    assert len(rows) == 1797
    assert [int(r["cluster"]) for r in rows] == np.load(out / "predictions.npy").tolist()
    bad = toolkit(["predict", "no-such-run"], tmp_path, mlflow_store)
    assert bad.returncode == 2 and "neither a run folder nor an MLflow run id" in bad.stderr


def test_timm_backbone_runs_a_digits_recipe(tmp_path: Path, mlflow_store: str) -> None:
    pytest.importorskip("timm")
    out = tmp_path / "run"
    proc = toolkit(["run", str(BASELINE), *sets(TINY[4:] + ["model.backbone=timm:resnet10t", "data.image_size=16",
                                                            "pretrain.method=none", "head_init.method=random"]),
                    "-o", str(out)], tmp_path, mlflow_store)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert 0.0 <= summary["acc"] <= 1.0
    params = MlflowClient(mlflow_store).get_run(summary["mlflow_run_id"]).data.params
    assert params["model.backbone"] == "timm:resnet10t"

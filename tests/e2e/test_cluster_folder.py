"""`toolkit cluster DIR` on a messy folder of real digits: mixed modes, sizes and formats, nested folders, a
non-image file and a corrupt one; the report it writes; and the one-line errors for impossible requests."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from mlflow.tracking import MlflowClient
from PIL import Image
from sklearn.datasets import load_digits

from conftest import RECIPES, toolkit_env

HANG_GUARD = 1800  # seconds: only a hung run gets near it
FAST = ["pretrain.epochs=3", "pretrain.batch_size=64", "head_init.epochs=2", "head_init.nredo=1",
        "train.epochs=2", "train.batch_size=32", "model.hidden_dims=[64, 64]"]
CLASSES = (0, 1, 7)
PER_CLASS = 14


def cli(args: list[str], cwd: Path, uri: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "toolkit.commands.app", *args], capture_output=True, text=True,
                          cwd=cwd, env=toolkit_env(MLFLOW_TRACKING_URI=uri, OMP_NUM_THREADS="1"), timeout=HANG_GUARD)


def save_mixed(pixels: np.ndarray, path: Path, i: int) -> Path:
    """One 8x8 digit (0..16) saved in the i-th of several modes, sizes and formats."""
    grey = (pixels * (255 / 16)).astype(np.uint8)
    big = np.kron(grey, np.ones((3, 3), dtype=np.uint8))  # 24 x 24: sizes differ inside the folder
    kind = i % 6
    if kind == 0:
        target, image = path.with_suffix(".png"), Image.fromarray(grey)
    elif kind == 1:  # 16-bit: must be scaled, not clipped to white
        target, image = path.with_suffix(".png"), Image.fromarray((big.astype(np.uint16) * 257))
    elif kind == 2:
        target, image = path.with_suffix(".jpg"), Image.fromarray(np.stack([big] * 3, -1)).convert("RGB")
    elif kind == 3:
        target, image = path.with_suffix(".png"), Image.fromarray(big).convert("P")
    elif kind == 4:
        rgba = np.stack([big, big, big, np.full_like(big, 255)], -1)
        target, image = path.with_suffix(".webp"), Image.fromarray(rgba, "RGBA")
    else:
        target, image = path.with_suffix(".tif"), Image.fromarray(grey)
    target.parent.mkdir(parents=True, exist_ok=True)
    image.save(target)
    return target


def messy_folder(root: Path) -> tuple[int, Path]:
    """Class folders (for --evaluate) with nested sub-folders; returns (readable images, the corrupt file)."""
    digits = load_digits()
    count = 0
    for c in CLASSES:
        rows = np.flatnonzero(digits.target == c)[:PER_CLASS]
        for i, row in enumerate(rows):
            sub = root / f"digit_{c}" / ("scans" if i % 2 else "") / f"img_{i:02d}"
            save_mixed(digits.images[row], sub, i)
            count += 1
    (root / "digit_0" / "notes.txt").write_text("not an image")
    corrupt = root / "digit_1" / "broken.png"
    corrupt.write_bytes(os.urandom(300))
    return count, corrupt


def test_cluster_a_messy_folder(tmp_path: Path, mlflow_store: str) -> None:
    folder = tmp_path / "photos"
    readable, corrupt = messy_folder(folder)
    out = tmp_path / "report"
    args = ["cluster", str(folder), "-k", "3", "-o", str(out), "--evaluate", "--no-progress", "--device", "cpu",
            *[a for s in FAST for a in ("--set", s)]]
    proc = cli(args, tmp_path, mlflow_store)
    assert proc.returncode == 0, proc.stderr[-3000:]
    warnings = [line for line in proc.stderr.splitlines() if "broken.png" in line]
    assert len(warnings) == 1 and "skipped" in warnings[0], proc.stderr[-3000:]

    with (out / "clusters.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == readable and not any(r["image"].endswith(("broken.png", "notes.txt")) for r in rows)
    assert {int(r["cluster"]) for r in rows} <= {0, 1, 2}
    assert all(0.0 <= float(r["confidence"]) <= 1.0 for r in rows)

    links = [p for p in (out / "clusters").rglob("*") if p.is_symlink()]
    assert len(links) == readable and all(p.resolve().is_file() for p in links)
    by_cluster = {int(p.parent.name) for p in links}
    assert by_cluster == {int(r["cluster"]) for r in rows}
    assert {p.name for p in (out / "grids").glob("*.png")} == {f"cluster_{c:03d}.png" for c in by_cluster}
    index = (out / "index.md").read_text()
    assert "broken.png" in index and "acc" in index and index.count("## Cluster") == len(by_cluster)

    summary_run = MlflowClient(mlflow_store).search_runs(
        [e.experiment_id for e in MlflowClient(mlflow_store).search_experiments()])[0]
    logged = {a.path for a in MlflowClient(mlflow_store).list_artifacts(summary_run.info.run_id, "cluster_report")}
    assert {"cluster_report/clusters.csv", "cluster_report/index.md", "cluster_report/grids"} <= logged

    # the 16-bit images were scaled, not clipped: a clipped one is a white square, alone in its own cluster
    # of blanks; here every image of the folder differs from white
    from toolkit.data.image_folder import read_images

    sixteen = sorted(folder.rglob("img_01.png"))
    assert sixteen and Image.open(sixteen[0]).mode.startswith("I")
    assert float(read_images(sixteen, (24, 24), 1).float().mean()) < 200


def test_more_clusters_than_images_is_one_line(tmp_path: Path, mlflow_store: str) -> None:
    folder = tmp_path / "few"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(folder / f"{i}.png")
    proc = cli(["cluster", str(folder), "-k", "9", "-o", str(tmp_path / "out"), "--no-progress"], tmp_path, mlflow_store)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "9 clusters" in lines[0] and "only 5 images" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_folder_of_identical_images_is_one_line(tmp_path: Path, mlflow_store: str) -> None:
    folder = tmp_path / "same"
    folder.mkdir()
    for i in range(6):
        Image.fromarray(np.full((8, 8), 128, dtype=np.uint8)).save(folder / f"{i}.png")
    proc = cli(["cluster", str(folder), "-k", "2", "-o", str(tmp_path / "out"), "--no-progress"], tmp_path, mlflow_store)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "identical" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_cluster_without_a_general_recipe_names_the_way_out(tmp_path: Path, mlflow_store: str) -> None:
    folder = tmp_path / "any"
    folder.mkdir()
    proc = cli(["cluster", str(folder), "-k", "2", "--method", "nosuch"], tmp_path, mlflow_store)
    assert proc.returncode == 2 and "nosuch.toml" in proc.stderr and "--recipe" in proc.stderr, proc.stderr


def test_k_is_a_number_of_at_least_two_or_auto(tmp_path: Path) -> None:
    import pytest

    from toolkit.errors import UserError
    from toolkit.run.cluster_folder import cluster_overrides, parse_k

    assert parse_k("auto") == "auto" and parse_k("12") == 12
    for bad in ("1", "x", "-3", "2.5"):
        with pytest.raises(UserError, match="at least 2"):
            parse_k(bad)
    folder = tmp_path / "2024"  # a folder named like a number stays a path
    settings = dict(s.split("=", 1) for s in cluster_overrides(folder, "auto", 32, False, False))
    from toolkit.recipe.loading import load_recipe

    rec = load_recipe(RECIPES / "baseline.toml", [f"{k}={v}" for k, v in settings.items()])
    assert rec.config.data.root == str(folder) and rec.config.data.num_clusters == "auto"

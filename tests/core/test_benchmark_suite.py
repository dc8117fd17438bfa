"""benchmarks/suite.py runs end to end (classic baselines and a method on a real offline data set) and
appends its table to the results file, so the yardstick of issue-level quality claims cannot rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import ROOT, toolkit_env

FAST = ["pretrain.epochs=2", "pretrain.batch_size=64", "head_init.epochs=1", "head_init.nredo=1", "train.epochs=1",
        "model.hidden_dims=[32]"]


def test_suite_runs_a_method_and_the_classics_and_appends_the_table(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n")
    cmd = [sys.executable, str(ROOT / "benchmarks" / "suite.py"), "--methods", "baseline", "nosuch",
           "--datasets", "lfw_subset", "--quick", "--jobs", "2", "--results", str(results),
           *[a for s in FAST for a in ("--set", s)]]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=1800,
                          env=toolkit_env(MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}", COLUMNS="250"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = results.read_text()
    assert text.startswith("# Benchmark results\n") and "## Offline multi-data-set suite" in text
    rows = [line for line in text.splitlines() if line.startswith("| lfw_subset")]
    methods = [line.split("|")[2].strip() for line in rows]
    assert methods[:3] == ["k-means (pixels)", "spectral, kNN graph (pixels)", "agglomerative, Ward (pixels)"]
    baseline = next(line for line in rows if line.split("|")[2].strip() == "baseline")
    acc, ratio = baseline.split("|")[3].strip(), baseline.split("|")[8].strip()
    assert 0.0 <= float(acc) <= 1.0 and float(ratio) > 0
    # a method without any recipe is a reported failure, not a crash or a silent gap
    assert any("nosuch" in line and "1 failed" in line for line in rows)
    assert "Failed runs:" in text and "nosuch" in text.split("Failed runs:")[1]
    assert "Whole suite:" in text and "min wall time" in text
    assert "2 run(s) at a time" in text  # worker processes, each with its own MLflow store


def test_pairs_left_out_by_default_are_rows_that_say_why(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n")
    cmd = [sys.executable, str(ROOT / "benchmarks" / "suite.py"), "--methods", "gcc", "cdc", "--datasets",
           "digits_color", "--quick", "--results", str(results), "--jobs", "1"]  # the in-process path
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=1800,
                          env=toolkit_env(MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}", COLUMNS="250"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {line.split("|")[2].strip(): line for line in results.read_text().splitlines()
            if line.startswith("| digits_color")}
    assert "not run: conditional DDPM on 32x32 RGB" in rows["gcc"] and "not run:" in rows["cdc"]
    assert "not run" not in rows["k-means (pixels)"]
    assert "digits_color: gcc" not in proc.stdout and "digits_color: cdc" not in proc.stdout  # nothing started

"""[train] max_steps (a rehearsal): every stage's loops, epochs and whole-data passes are cut the same way, shapes
stay real, nothing reaches a cache, and what was measured lands in rehearsal.json for benchmarks/rehearsal.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from toolkit.api.step_cap import MAX_EPOCHS, StepCap, activated, chunked
from toolkit.data.config import DataConfig
from toolkit.data.registry import load_data
from toolkit.recipe.loading import load_recipe
from toolkit.run.engine import Engine

from conftest import RECIPES

ROOT = Path(__file__).resolve().parents[2]
N, B = 300, 32
TINY = ['data.dataset="synthetic"', f"data.num_samples={N}", "data.num_classes=3", "data.synthetic_size=8",
        "data.synthetic_channels=1", "model.hidden_dims=[16]", "model.head_hidden_dim=16", "train.epochs=6",
        f"train.batch_size={B}", "pretrain.epochs=7", "pretrain.batch_size=64", "head_init.epochs=5",
        "head_init.batch_size=50"]


def test_chunked_pass_runs_few_chunks_and_keeps_the_shape() -> None:
    calls: list[tuple[int, int]] = []

    def fn(a: int, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        calls.append((a, b))
        rows = torch.arange(a, b, dtype=torch.float32)
        return rows[:, None].expand(-1, 3), rows

    full = chunked(103, 10, fn)
    assert len(calls) == 11 and torch.equal(full[1], torch.arange(103, dtype=torch.float32))
    calls.clear()
    cap = StepCap(2)
    with activated(cap):
        feats, rows = chunked(103, 10, fn)
    assert calls == [(0, 10), (10, 20)]
    assert feats.shape == (103, 3) and torch.equal(rows, torch.arange(103).remainder(20).float())
    record = cap.stages["between_stages"]
    assert record.pass_projected == pytest.approx(record.pass_seconds * 11 / 2)


def test_inner_loop_runs_a_few_and_scales_the_chunk_time() -> None:
    from toolkit.api import inner_loop

    seen: list[int] = []

    def fn(a: int, b: int) -> tuple[torch.Tensor]:
        seen.extend(inner_loop(list(range(50))))
        return (torch.zeros(b - a),)

    assert list(inner_loop(range(5))) == [0, 1, 2, 3, 4]  # no cap: every item
    cap = StepCap(2)
    with activated(cap):
        chunked(40, 10, fn)
    assert seen == [0, 1, 0, 1]  # two chunks, two inner steps each
    record = cap.stages["between_stages"]
    assert record.pass_projected == pytest.approx(record.pass_seconds * 25 * 4 / 2)


def test_a_pass_inside_a_step_scales_the_step_not_the_passes() -> None:
    import time

    def fn(a: int, b: int) -> tuple[torch.Tensor]:
        time.sleep(0.02)
        return (torch.zeros(b - a),)

    cap = StepCap(1)
    with activated(cap):
        for _ in cap.steps(iter([torch.arange(3)] * 5), 5):
            chunked(100, 10, fn)  # 1 of 10 chunks: the step would take about 10 times as long
    record = cap.stages["between_stages"]
    assert record.pass_seconds == 0 and len(record.step_seconds) == 1 and record.step_seconds[0] >= 10 * 0.02


def test_capped_run_cuts_every_stage_the_same_way(tmp_path: Path, mlflow_store: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOOLKIT_CACHE_DIR", str(tmp_path / "cache"))
    summary = Engine(load_recipe(RECIPES / "baseline_digits.toml", [*TINY, "train.max_steps=2"]), tmp_path / "run",
                     device="cpu").run()
    assert 0.0 <= summary["acc"] <= 1.0  # evaluated over all N rows (repeated ones), so the run ends normally
    stages = {s["name"]: s for s in json.loads((tmp_path / "run" / "rehearsal.json").read_text())["stages"]}
    expected = {"pretrain": (7, 300 // 64), "head_init": (5, -(-300 // 50)), "self_label": (6, 300 // B)}
    for name, (epochs, full_steps) in expected.items():
        s = stages[name]
        assert s["epochs"] == epochs and s["epochs_run"] == MAX_EPOCHS, name  # declared vs run
        assert s["steps_per_epoch"] == full_steps, name  # the full size, not what ran
        assert len(s["step_seconds"]) == 2 * MAX_EPOCHS, name  # 2 steps in each of 2 epochs
        assert len(s["marks"]) == MAX_EPOCHS and s["peak_bytes"] > 0, name
    assert stages["head_init"]["pass_projected"] > 0  # the engine's encode pass before head-init
    assert not list((tmp_path / "cache").glob("backbones/*.pt"))  # a rehearsal backbone is never cached
    # and without the cap the same recipe caches its backbone and runs every epoch
    full = Engine(load_recipe(RECIPES / "baseline_digits.toml", TINY), tmp_path / "full", device="cpu").run()
    assert not (tmp_path / "full" / "rehearsal.json").exists()
    assert list((tmp_path / "cache").glob("backbones/*"))
    assert full["epochs"] == 6 and summary["epochs"] == MAX_EPOCHS


def test_synthetic_like_has_the_named_shapes() -> None:
    parts = load_data(DataConfig(dataset="synthetic", synthetic_like="cifar10"), "split")
    assert parts.train.images.shape == (50_000, 3, 32, 32) and parts.test.images.shape == (10_000, 3, 32, 32)
    assert parts.train.images.dtype == torch.uint8 and set(parts.train.labels.tolist()) == set(range(10))
    whole = load_data(DataConfig(dataset="synthetic", synthetic_like="imagenet10", image_size=40), "transductive")
    assert whole.train.images.shape == (13_000, 3, 40, 40) and whole.test is None


def test_rehearsal_script_prints_the_stage_table(tmp_path: Path) -> None:
    env_sets = [arg for value in [*TINY, "pretrain.epochs=30"] for arg in ("--set", value)]
    proc = subprocess.run([sys.executable, "benchmarks/rehearsal.py", str(RECIPES / "baseline_digits.toml"),
                           "--max-steps", "2", "--keep", str(tmp_path), *env_sets],
                          cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| baseline_digits.toml")]
    assert {"pretrain", "head_init", "self_label"} <= {row.split("|")[2].strip() for row in rows}
    pretrain = next(row for row in rows if row.split("|")[2].strip() == "pretrain")
    assert "4 x 30" in pretrain  # full steps per epoch x declared epochs
    assert "**whole recipe**: passed" in proc.stdout and "not measured" in proc.stdout

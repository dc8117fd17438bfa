"""DRC end to end on real data (sklearn digits): one-stage run, MLflow contents, cached head, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

from conftest import RECIPES, toolkit_env

DRC = RECIPES / "drc_digits.toml"
SMALL = ["pretrain.epochs=12", "model.hidden_dims=[128, 128]", "pretrain.aux_head=true"]


def _cli(args: list[str], cwd: Path, uri: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "toolkit.commands.app", *args], capture_output=True, text=True, cwd=cwd,
                          env=toolkit_env(MLFLOW_TRACKING_URI=uri, OMP_NUM_THREADS="1"), timeout=1800)


def _sets(overrides: list[str]) -> list[str]:
    return sum((["--set", s] for s in overrides), [])


def test_drc_digits_one_stage_run_and_cached_head(tmp_path: Path, mlflow_store: str) -> None:
    proc = _cli(["run", str(DRC), *_sets(SMALL), "-o", str(tmp_path / "a"), "--no-progress", "--device", "cpu"],
                tmp_path, mlflow_store)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["epochs"] == 0 and summary["plugins"]["head_init"] == "from_pretrain"
    assert summary["acc"] > 0.6, summary["acc"]  # chance is ~0.2; 12 epochs of DRC already cluster most digits

    client = MlflowClient(mlflow_store)
    run = client.get_run(summary["mlflow_run_id"])
    assert run.data.tags["plugin.pretrain"] == "drc" and run.data.tags["pretrain_cache"] == "miss"
    assert run.data.params["pretrain.t_af"] == "0.5" and run.data.params["pretrain.t_ap"] == "0.95"
    history = {name: [m.value for m in sorted(client.get_metric_history(run.info.run_id, f"pretrain_{name}"),
                                              key=lambda m: m.step)]
               for name in ("loss", "af", "ap", "balance", "aux_loss", "clusters_used")}
    assert all(len(v) == 12 for v in history.values()), {k: len(v) for k, v in history.items()}
    assert history["ap"][-1] < history["ap"][0] and history["af"][-1] < history["af"][0]
    assert all(0.1 - 1e-6 <= b <= 1.0 for b in history["balance"])  # L_CR / N lies in [1/K, 1]

    # A second run with the same pretrain settings takes backbone *and* head from the cache: same result.
    proc = _cli(["run", str(DRC), *_sets(SMALL), "-o", str(tmp_path / "b"), "--no-progress", "--device", "cpu"],
                tmp_path, mlflow_store)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cached = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert client.get_run(cached["mlflow_run_id"]).data.tags["pretrain_cache"] == "hit"
    assert cached["acc"] == summary["acc"] and cached["nmi"] == summary["nmi"]


def test_from_pretrain_without_a_pretrained_head_is_one_clear_line(tmp_path: Path, mlflow_store: str) -> None:
    proc = _cli(["run", str(DRC), "--set", "pretrain.method=none", "-o", str(tmp_path / "x"), "--no-progress",
                 "--device", "cpu"], tmp_path, mlflow_store)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "produced no clustering head" in proc.stderr and "Traceback" not in proc.stderr

"""benchmarks/gpu/check.py on the CPU: the parts a CPU can check pass, the CUDA-only parts say why they were
skipped, and the Markdown table is written (the GPU machine runs the same script in full)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import toolkit_env

ROOT = Path(__file__).resolve().parents[2]


def test_cpu_parts_of_the_gpu_check(tmp_path: Path) -> None:
    # the speed settings part is a `toolkit run` with channels_last / data on device forced: tests/core/
    # test_speed_options.py runs those settings in-process already, so the suite leaves that part out
    parts = "environment,imports,CUDA,faiss,NCCL,throughput,rehearsed"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu" / "check.py"), "--cpu", "--quick",
                           "--only", parts, "--out", str(tmp_path)], capture_output=True, text=True,
                          env=toolkit_env(), timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = (tmp_path / "check.md").read_text()
    lines = table.splitlines()
    first = lines[lines.index("| part | result | detail | s |") + 2:]
    parts_rows = first[:first.index("")] if "" in first else first
    rows = {cells[0]: cells[1] for cells in ([c.strip() for c in line.strip("|").split("|")] for line in parts_rows)}
    assert rows["environment"] == "ok" and rows["imports without ray, optuna, mlflow.server"] == "ok"
    assert rows["CUDA tests"] == "skipped" and rows["two-rank NCCL data parallel"] == "skipped"
    assert rows["faiss k-means on the GPU"] == "skipped"  # ran on the CPU only
    assert rows["paper recipes rehearsed at CIFAR-10 size"] == "skipped"  # the suite rehearses on the CPU itself
    assert rows["stage throughput vs bare backbone"] == "ok"
    assert "bare backbone fwd+bwd (ceiling)" in table and "baseline: self-labeling" in table

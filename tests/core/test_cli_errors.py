"""Bad input: one line naming file, section and key; exit code 2; no traceback; nothing in MLflow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import RECIPES, ROOT, toolkit_env

BASELINE = RECIPES / "baseline_digits.toml"


def toolkit(args: list[str], cwd: Path, uri: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "toolkit.commands.app", *args], capture_output=True, text=True, cwd=cwd,
                          env=toolkit_env(MLFLOW_TRACKING_URI=uri), timeout=1800)


def assert_user_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


CASES = [
    (["--set", "selection.method=nope"], ("baseline_digits.toml", "[selection] method", "installed:")),
    (["--set", "train.epochz=3"], ("[train] epochz", "unknown key", "valid keys")),
    (["--set", "train.epochs=\"ten\""], ("[train] epochs", "integer")),
    (["--set", "train.lr=-0.5"], ("[train] lr", "greater than 0")),
    (["--set", "pretrain.augment.degres=3"], ("[pretrain.augment] degres", "unknown key")),
    (["--set", "head_init.view=sideways"], ("[head_init] view", "'raw', 'weak' or 'strong'")),
    (["--set", "data.dataset=cifar10", "--set", "data.root=/nonexistent/data"],
     ("cifar10", "/nonexistent/data", "download")),
    (["--device", "cuda:7"], ("cuda",)),
]


@pytest.mark.parametrize("extra, fragments", CASES)
def test_run_rejects_bad_input(tmp_path: Path, mlflow_store: str, extra: list[str], fragments: tuple[str, ...]) -> None:
    if extra[:1] == ["--device"]:
        import torch

        if torch.cuda.device_count() > 7:
            pytest.skip("this machine has a cuda:7")
    proc = toolkit(["run", str(BASELINE), *extra, "-o", str(tmp_path / "out")], tmp_path, mlflow_store)
    assert_user_error(proc, *fragments)
    assert not (tmp_path / "mlflow.db").exists(), "a rejected run must write nothing to MLflow"


def test_toml_syntax_error_and_missing_file(tmp_path: Path, mlflow_store: str) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nepochs = 1\n")
    assert_user_error(toolkit(["run", str(bad)], tmp_path, mlflow_store), "bad.toml", "TOML syntax error")
    assert_user_error(toolkit(["run", str(tmp_path / "missing.toml")], tmp_path, mlflow_store), "missing.toml",
                      "file not found")
    assert not (tmp_path / "mlflow.db").exists()


def test_recipes_validate(tmp_path: Path, mlflow_store: str) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[selection]\nmethod = "threshold"\nthreshold = 2.0\n')
    ok = toolkit(["recipes", "validate", *map(str, sorted(RECIPES.glob("*.toml")))], tmp_path, mlflow_store)
    assert ok.returncode == 0 and "ok" in ok.stdout
    proc = toolkit(["recipes", "validate", str(BASELINE), str(bad)], tmp_path, mlflow_store)
    assert proc.returncode == 2
    assert "[selection] threshold" in proc.stderr and "Traceback" not in proc.stderr


def test_resume_without_a_previous_run(tmp_path: Path, mlflow_store: str) -> None:
    proc = toolkit(["run", str(BASELINE), "--resume", "-o", str(tmp_path / "empty")], tmp_path, mlflow_store)
    assert_user_error(proc, "--resume", "run_state.json")


def test_unreachable_tracking_server_fails_fast(tmp_path: Path) -> None:
    import socket
    import time

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.time()
    proc = toolkit(["run", str(BASELINE), "--set", "pretrain.epochs=1", "-o", str(tmp_path / "out")], tmp_path,
                   f"http://127.0.0.1:{port}")
    assert_user_error(proc, "unreachable", f"127.0.0.1:{port}", "--tracking-fallback local")
    assert time.time() - start < 60
    assert not (tmp_path / "out" / "checkpoints").exists()  # nothing trained
    assert not (tmp_path / "out" / "mlflow.db").exists()  # no fallback unless asked for

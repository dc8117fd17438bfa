"""A failed run keeps its full traceback: OUTPUT_DIR/traceback.txt (with the plugin's own frames and the
chained causes), uploaded to its MLflow run; `toolkit run --traceback` / TOOLKIT_TRACEBACK=1 print it, the
default is one line naming the file. Interruptions and user errors are not failures: no traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from toolkit.errors import TrainingError
from toolkit.run.engine import Engine
from toolkit.run.events import Observer
from toolkit.run.folder import RunFolder
from toolkit.track.tracker import MlflowTracker

from conftest import RECIPES, toolkit_env
from test_failures import TINY, _recipe_with

HEADER = "Traceback (most recent call last)"


def _mlflow_run(store: str, out: Path):  # type: ignore[no-untyped-def]
    run_id = json.loads(RunFolder(out).state.read_text())["mlflow_run_id"]
    return MlflowClient(store).get_run(run_id)


def test_plugin_failure_writes_traceback_and_mlflow_keeps_it(tmp_path: Path, mlflow_store: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # MLflow's default artifact root is relative
    out = tmp_path / "run"
    with pytest.raises(TrainingError):
        Engine(_recipe_with("selection", "raise"), out, device="cpu", observers=[MlflowTracker()]).run()
    text = RunFolder(out).traceback.read_text()
    assert text.startswith(HEADER)
    assert "test_failures.py" in text and "in select" in text  # the plugin's own frame
    assert "ValueError: boom in select" in text
    assert "The above exception was the direct cause of the following exception" in text  # chained causes
    assert text.rstrip().splitlines()[-1].startswith("toolkit.errors.TrainingError: stage self_label, epoch 2")
    assert json.loads(RunFolder(out).state.read_text())["status"] == "failed"
    run = _mlflow_run(mlflow_store, out)
    assert run.info.status == "FAILED"
    client = MlflowClient(mlflow_store)
    assert "traceback.txt" in [a.path for a in client.list_artifacts(run.info.run_id)]
    uploaded = Path(client.download_artifacts(run.info.run_id, "traceback.txt", str(tmp_path / "dl")))
    assert uploaded.read_text() == text


def test_interruption_is_no_failure_and_clears_an_old_traceback(tmp_path: Path, mlflow_store: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from toolkit.recipe.loading import load_recipe

    class StopAfterEpoch1(Observer):
        def on_epoch_end(self, *, stage: str, epoch: int, metrics: dict, state: object) -> None:
            if stage == "self_label" and epoch == 1:
                raise KeyboardInterrupt

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    out.mkdir()
    RunFolder(out).traceback.write_text("from an earlier run in this folder\n")
    with pytest.raises(KeyboardInterrupt):
        Engine(load_recipe(RECIPES / "baseline_digits.toml", TINY), out, device="cpu",
               observers=[MlflowTracker(), StopAfterEpoch1()]).run()
    assert not RunFolder(out).traceback.exists()
    assert json.loads(RunFolder(out).state.read_text())["status"] == "interrupted"
    run = _mlflow_run(mlflow_store, out)
    assert run.info.status == "KILLED"
    assert "traceback.txt" not in [a.path for a in MlflowClient(mlflow_store).list_artifacts(run.info.run_id)]


def test_tune_trial_journal_uploads_the_traceback(tmp_path: Path, mlflow_store: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A search trial journals its run; the driver replaying a failed trial uploads its traceback.txt."""
    from toolkit.track.journal import ChildRuns, JournalTracker

    monkeypatch.chdir(tmp_path)
    trials = tmp_path / "trials"
    with pytest.raises(TrainingError):
        Engine(_recipe_with("selection", "raise"), trials / "t1", device="cpu", observers=[JournalTracker()]).run()
    client = MlflowClient(mlflow_store)
    exp = client.create_experiment("search")
    parent = client.create_run(exp).info.run_id
    run_id = ChildRuns(mlflow_store, None, "search", parent, trials).sync("t1")
    assert run_id is not None
    assert client.get_run(run_id).info.status == "FAILED"
    assert "traceback.txt" in [a.path for a in client.list_artifacts(run_id)]


def _cli_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    """`toolkit run` in-process with a selection plugin that raises in epoch 2."""
    import toolkit.recipe.loading as loading
    from toolkit.commands.app import app

    faulty = _recipe_with("selection", "raise")
    monkeypatch.setattr(loading, "load_recipe", lambda *a, **kw: faulty)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", str(RECIPES / "baseline_digits.toml"), "-o", str(out), "--device", "cpu",
                                      "--no-progress", *args], env=env)
    return result, out


def without_warnings(stderr: str) -> str:
    """stderr less the run's warning lines (e.g. a reused cached backbone), which --no-progress still prints."""
    return "".join(line for line in stderr.splitlines(keepends=True) if not line.startswith("warning: "))


def test_cli_default_is_one_line_naming_the_file(tmp_path: Path, mlflow_store: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    result, out = _cli_failure(tmp_path, monkeypatch, env={"TOOLKIT_TRACEBACK": ""})
    assert result.exit_code == 1, result.output
    assert HEADER not in result.stderr
    lines = [line for line in without_warnings(result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("training failed: stage self_label, epoch 2")
    assert lines[0].endswith(f"(full traceback: {RunFolder(out).traceback}; --traceback to print it)")
    assert RunFolder(out).traceback.is_file()


@pytest.mark.parametrize("how", ["flag", "env"])
def test_cli_prints_the_traceback_on_request(tmp_path: Path, mlflow_store: str, monkeypatch: pytest.MonkeyPatch,
                                             how: str) -> None:
    args, env = (["--traceback"], None) if how == "flag" else ([], {"TOOLKIT_TRACEBACK": "1"})
    result, out = _cli_failure(tmp_path, monkeypatch, *args, env=env)
    assert result.exit_code == 1, result.output
    first, rest = without_warnings(result.stderr).split("\n", 1)
    assert first.startswith("training failed: stage self_label, epoch 2") and "--traceback to print it" not in first
    assert rest.startswith(HEADER)
    assert "test_failures.py" in rest and "ValueError: boom in select" in rest
    assert rest.strip() == RunFolder(out).traceback.read_text().strip()


def test_real_process_honours_toolkit_traceback(tmp_path: Path, mlflow_store: str) -> None:
    """The installed command with TOOLKIT_TRACEBACK=1: a diverging run prints its traceback after the line."""
    proc = subprocess.run([sys.executable, "-m", "toolkit.commands.app", "run", str(RECIPES / "baseline_digits.toml"),
                           *[a for s in TINY + ["train.lr=1e30", "train.backbone_lr=1e30"] for a in ("--set", s)],
                           "-o", str(tmp_path / "run"), "--no-progress", "--device", "cpu"], capture_output=True,
                          text=True, cwd=tmp_path, env=toolkit_env(MLFLOW_TRACKING_URI=mlflow_store, TOOLKIT_TRACEBACK="1"),
                          timeout=1800)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert without_warnings(proc.stderr).startswith("training failed: stage self_label")
    assert HEADER in proc.stderr and "non-finite" in proc.stderr.rsplit(HEADER, 1)[1]
    assert RunFolder(tmp_path / "run").traceback.is_file()


def test_user_error_stays_one_line_with_traceback_flag(tmp_path: Path, mlflow_store: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "toolkit.commands.app", "run", str(RECIPES / "baseline_digits.toml"),
                           "--set", "train.epochz=3", "--traceback", "-o", str(tmp_path / "out")], capture_output=True,
                          text=True, cwd=tmp_path, env=toolkit_env(MLFLOW_TRACKING_URI=mlflow_store), timeout=1800)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert [line for line in proc.stderr.splitlines() if line.strip()] == [proc.stderr.strip()]
    assert "[train] epochz" in proc.stderr


def test_tune_without_ray_is_one_line_and_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A lean install (no Ray Tune, no Optuna: benchmarks/gpu's wheelhouse) says what `toolkit tune` needs."""
    from toolkit.commands.app import app

    monkeypatch.setitem(sys.modules, "ray", None)  # what an installation without ray looks like to find_spec
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "search"
    result = CliRunner().invoke(app, ["tune", str(RECIPES / "baseline_digits.toml"), "-o", str(out)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "toolkit tune needs ray" in lines[0] and "pip install" in lines[0], result.stderr
    assert not out.exists()

"""Third-party plugins: the example package end to end, scaffolding, broken/mismatched/duplicate plugins.

Packages are installed for real with pip into temp folders (`--target`), then put on PYTHONPATH of
subprocesses, so entry-point discovery sees them exactly as it would see an installed distribution.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from toolkit import API_VERSION
from mlflow.tracking import MlflowClient

from conftest import RECIPES, ROOT, toolkit_env

EXAMPLE = ROOT / "examples" / "toolkit-topk-selection"
TINY = ["pretrain.epochs=2", "pretrain.batch_size=256", "head_init.epochs=1", "head_init.nredo=1", "train.epochs=2",
        "model.hidden_dims=[32]"]


def pip_target(package: Path, target: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target",
                    str(target), str(package)], check=True, capture_output=True, text=True, timeout=1800)


def run(args: list[str], cwd: Path, pythonpath: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, cwd=cwd, timeout=1800,
                          env=toolkit_env(PYTHONPATH=str(pythonpath), **env))


def test_example_package_installed_and_used_end_to_end(tmp_path: Path, mlflow_store: str) -> None:
    site = tmp_path / "site"
    pip_target(EXAMPLE, site)
    own = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")], tmp_path, site)
    assert own.returncode == 0, own.stdout[-2000:]
    out = tmp_path / "run"
    proc = run([sys.executable, "-m", "toolkit.commands.app", "run", str(RECIPES / "baseline_digits.toml"), "--set",
                "selection.method=topk", "--set", "selection.fraction=0.4", *sum((["--set", s] for s in TINY), []),
                "-o", str(out), "--no-progress"], tmp_path, site, MLFLOW_TRACKING_URI=mlflow_store)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["plugins"]["selection"] == "topk"
    tags = MlflowClient(mlflow_store).get_run(summary["mlflow_run_id"]).data.tags
    assert tags["pkg.selection"] == "toolkit-topk-selection 0.1.0"
    metrics = MlflowClient(mlflow_store).get_metric_history(summary["mlflow_run_id"], "selected_fraction")
    assert metrics and all(0.3 < m.value < 0.6 for m in metrics)  # about 40% of every batch


def test_scaffolded_package_passes_its_own_test(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "toolkit.commands.app", "plugins", "new", "sharp_sel", "--slot", "selection",
                           "--dir", str(tmp_path)], capture_output=True, text=True, env=toolkit_env(), timeout=1800)
    assert proc.returncode == 0, proc.stderr
    pkg = tmp_path / "sharp_sel"
    assert (pkg / "pyproject.toml").is_file() and (pkg / "tests" / "test_plugin.py").is_file()
    site = tmp_path / "site"
    pip_target(pkg, site)
    test = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(pkg / "tests")], tmp_path, site)
    assert test.returncode == 0, test.stdout[-3000:]
    assert "2 passed" in test.stdout


def test_scaffold_rejects_bad_names(tmp_path: Path) -> None:
    for name, slot in (("Bad-Name", "selection"), ("ok_name", "nowhere")):
        proc = subprocess.run([sys.executable, "-m", "toolkit.commands.app", "plugins", "new", name, "--slot", slot, "--dir",
                               str(tmp_path)], capture_output=True, text=True, env=toolkit_env(), timeout=1800)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr


BAD_PYPROJECT = """[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "toolkit-bad-plugins"
version = "0.0.1"

[project.entry-points."toolkit.selection"]
broken = "bad_plugins.broken:Broken"
future = "bad_plugins.future:Future"
threshold = "bad_plugins.future:Future"
old_declared = "bad_plugins.legacy:Declared"
old_undeclared = "bad_plugins.legacy:Undeclared"

[tool.setuptools]
packages = ["bad_plugins"]
"""


@pytest.fixture(scope="module")
def bad_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("bad_src")
    (src / "bad_plugins").mkdir()
    (src / "pyproject.toml").write_text(BAD_PYPROJECT)
    (src / "bad_plugins" / "__init__.py").write_text("")
    (src / "bad_plugins" / "broken.py").write_text("raise ImportError('needs a library that is not installed')\n")
    (src / "bad_plugins" / "future.py").write_text(
        "from toolkit.api.slots import SelectionPlugin\n\n\nclass Future(SelectionPlugin):\n"
        "    \"\"\"Written for a future toolkit.\"\"\"\n    api_version = '>=3.0,<4.0'\n")
    (src / "bad_plugins" / "legacy.py").write_text(  # written for API 1.x, with and without saying so
        "from toolkit.api import Selection, SelectionPlugin\n\n\nclass Declared(SelectionPlugin):\n"
        "    api_version = '>=1.0,<2.0'\n\n    def select(self, batch):\n        return None\n\n\n"
        "class Undeclared(SelectionPlugin):\n    def select(self, batch):\n        return None\n")
    site = tmp_path_factory.mktemp("bad_site")
    pip_target(src, site)
    return site


def test_broken_and_clashing_plugins_are_listed_not_fatal(tmp_path: Path, bad_site: Path) -> None:
    proc = run([sys.executable, "-m", "toolkit.commands.app", "plugins", "list", "--json"], tmp_path, bad_site)
    assert proc.returncode == 0, proc.stderr
    rows = {(r["name"], r["distribution"]): r for r in json.loads(proc.stdout)}
    assert rows[("broken", "toolkit-bad-plugins")]["status"] == "broken"
    assert "needs a library that is not installed" in rows[("broken", "toolkit-bad-plugins")]["error"]
    assert "API" in rows[("future", "toolkit-bad-plugins")]["error"]
    assert "more than one" in rows[("threshold", "deepclust-baseline")]["error"]
    assert rows[("all", "deepclust-baseline")]["status"] == "ok"
    ok = run([sys.executable, "-m", "toolkit.commands.app", "recipes", "validate", str(RECIPES / "baseline_digits.toml"),
              "--set", "selection.method=all"], tmp_path, bad_site)
    assert ok.returncode == 0, ok.stderr  # a broken plugin breaks only recipes that use it


@pytest.mark.parametrize("method, fragments", [
    ("broken", ["selection plugin 'broken'", "failed to import", "needs a library"]),
    ("future", ["selection plugin 'future'", "supports toolkit API >=3.0,<4.0", f"provides API {API_VERSION}"]),
    ("old_declared", ["selection plugin 'old_declared'", "supports toolkit API >=1.0,<2.0", f"provides API {API_VERSION}",
                      "Migrating from API 1.x"]),
    ("old_undeclared", ["selection plugin 'old_undeclared'", "written for toolkit API 1.x", "select(batch)",
                        "select(batch, confidence)", "Migrating from API 1.x"]),
    ("threshold", ["'threshold' is declared more than once", "toolkit-bad-plugins", "deepclust-baseline"]),
])
def test_recipe_using_a_bad_plugin_fails_in_one_line(tmp_path: Path, bad_site: Path, method: str,
                                                      fragments: list[str]) -> None:
    proc = run([sys.executable, "-m", "toolkit.commands.app", "recipes", "validate", str(RECIPES / "baseline_digits.toml"),
                "--set", f"selection.method={method}"], tmp_path, bad_site)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    line = [x for x in proc.stderr.splitlines() if x.strip()]
    assert len(line) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in line[0], (fragment, line[0])


def test_plugins_show(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "toolkit.commands.app", "plugins", "show", "kmeans_pseudo_label"],
                          capture_output=True, text=True, env=toolkit_env(), timeout=1800)
    assert proc.returncode == 0, proc.stderr
    for fragment in ("head_init", "deepclust-baseline", "nredo", "spherical", "True", "k-means"):
        assert fragment in proc.stdout, fragment

"""`toolkit tune` input errors: one line naming [tune] / [tune.space] / [tune.resources] and the key, exit 2,
no traceback, before any Ray instance or MLflow run is started."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import RECIPES, toolkit_env

BASELINE = RECIPES / "baseline_digits.toml"

CASES = [  # through the CLI (a few: each costs a process start)
    (["--set", 'tune.space.train.lrr={type="uniform", low=0.1, high=0.2}'],
     ("[tune.space] train.lrr", "[train] lrr: unknown key")),
    (["--set", "train.epochs=3"], ("[tune] grace_period", "fifo")),  # ASHA grace period 5 >= 3 epochs
    (["--resume"], ("holds no search",)),
]
IN_PROCESS = [
    ('tune.space.selection.threshold={type="uniform", low=0.5, high=1.5}', r"\[tune.space\] selection.threshold: .*1.5"),
    ('tune.space.train.lr={type="loguniform", low=0, high=1}', r"\[tune.space\] train.lr: .*low > 0"),
    ("tune.resources.gpus=2", r"\[tune.resources\] gpus: .*data-parallel"),
    ("tune.resources={workers=2, gpus=0.5}", r"\[tune.resources\] gpus: .*whole GPU"),
    ('tune.scheduler="hyperband"', r"\[tune\] scheduler: .*'asha' or 'fifo'"),
    ('tune.metric="my_score"', r"\[tune\] metric: .*mode"),
    ('tune.initial=[{"train.lr"=-1.0}]', r"\[tune\] initial"),
    ('tune.space.model.hidden_dims={type="choice", values=[[32], [0]]}', r"\[tune.space\] model.hidden_dims"),
]


@pytest.mark.parametrize("override, pattern", IN_PROCESS, ids=[c[0].split("=")[0] for c in IN_PROCESS])
def test_tune_section_is_validated(override: str, pattern: str) -> None:
    from toolkit.errors import RecipeError
    from toolkit.recipe import load_recipe

    with pytest.raises(RecipeError, match=pattern):
        load_recipe(BASELINE, [override], check_tune=True)


@pytest.mark.parametrize("args, fragments", CASES, ids=[c[1][0] for c in CASES])
def test_tune_input_errors_are_one_line(tmp_path: Path, args: list[str], fragments: tuple[str, ...]) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = subprocess.run([sys.executable, "-m", "toolkit.cli", "tune", str(BASELINE), "-o", str(tmp_path / "s"), *args],
                          capture_output=True, text=True, cwd=tmp_path, env=toolkit_env(MLFLOW_TRACKING_URI=uri),
                          timeout=300)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert not (tmp_path / "s").exists()  # nothing started


def test_recipe_without_tune_section(tmp_path: Path) -> None:
    recipe = tmp_path / "plain.toml"
    recipe.write_text('[experiment]\nname = "plain"\n[data]\ndataset = "digits"\n')
    proc = subprocess.run([sys.executable, "-m", "toolkit.cli", "tune", str(recipe), "-o", str(tmp_path / "s")],
                          capture_output=True, text=True, cwd=tmp_path,
                          env=toolkit_env(MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}"), timeout=300)
    assert proc.returncode == 2 and "[tune]" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_baseline_recipe_has_a_search() -> None:
    from toolkit.recipe import load_recipe

    rec = load_recipe(BASELINE)
    assert rec.model.tune is not None and set(rec.model.tune.space) == {"train.lr", "selection.threshold"}


def test_label_detection_loads_only_data_sets_read_from_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """digits/synthetic always have labels: the driver decides the default metric without loading them."""
    import toolkit.data.registry as registry
    from toolkit.recipe import load_recipe
    from toolkit.tune import Search

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("loaded")

    monkeypatch.setattr(registry, "load_data", refuse)
    assert Search._has_labels(load_recipe(BASELINE, ['data.dataset="synthetic"']))
    assert Search._has_labels(load_recipe(BASELINE))
    assert registry.labelled_without_loading("digits") and not registry.labelled_without_loading("image_folder")
    assert not registry.labelled_without_loading("cifar10")  # read from disk: loading also checks the files exist


def test_random_search_holds_max_concurrent_itself() -> None:
    """Ray Tune ignores max_concurrent_trials for random search (BasicVariantGenerator): it must carry the limit."""
    from toolkit.recipe import load_recipe
    from toolkit.tune import _searcher

    cfg = load_recipe(BASELINE, ['tune.search_alg="random"', "tune.max_concurrent=2"], check_tune=True).model.tune
    assert _searcher(cfg, 0, [], cfg.max_concurrent).max_concurrent == 2
    assert _searcher(cfg, 0, []).max_concurrent == 0  # 0: as many as resources allow

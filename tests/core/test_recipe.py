"""Recipe loading, overrides, and one-line errors naming file, section and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from toolkit.errors import RecipeError
from toolkit.recipe.loading import load_recipe, parse_override, validate

from conftest import RECIPES

GOOD = """
[experiment]
name = "t"
[data]
dataset = "digits"
[model]
backbone = "mlp"
[selection]
method = "threshold"
threshold = 0.9
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "r.toml"
    p.write_text(text)
    return p


def test_every_shipped_recipe_validates() -> None:
    files = sorted(RECIPES.glob("*.toml"))
    assert files, "no recipes shipped"
    for f in files:
        rec = load_recipe(f)
        assert rec.experiment.name


def test_defaults_and_plugin_options(tmp_path: Path) -> None:
    rec = load_recipe(write(tmp_path, GOOD))
    assert rec.plugin_options["selection"].threshold == 0.9
    assert rec.config.pretrain.method == "none"
    resolved = rec.resolved()
    assert resolved["selection"] == {"method": "threshold", "threshold": 0.9, "normalize": "selected", "class_balance": False,
                                     "max_ratio": 50.0}
    # the resolved recipe is itself a valid recipe
    again = validate(__import__("tomllib").loads(rec.to_toml()))
    assert again.resolved() == resolved


def test_overrides_parse_toml_literals(tmp_path: Path) -> None:
    rec = load_recipe(write(tmp_path, GOOD), ["train.epochs=5", "experiment.seed=3", "selection.threshold=0.5",
                                               "model.hidden_dims=[64, 32]", "experiment.name=hello world"])
    assert rec.config.train.epochs == 5 and rec.experiment.seed == 3
    assert rec.plugin_options["selection"].threshold == 0.5
    assert rec.config.model.hidden_dims == [64, 32]
    assert rec.experiment.name == "hello world"
    assert parse_override("a.b=true") == (["a", "b"], True)


@pytest.mark.parametrize(
    "text, overrides, section, key, fragment",
    [
        (GOOD, ["selection.method=nope"], "selection", "method", "installed: all, "),
        (GOOD, ["train.epochz=3"], "train", "epochz", "valid keys"),
        (GOOD, ["selection.treshold=0.3"], "selection", "treshold", "valid keys: class_balance, max_ratio, normalize, threshold"),
        (GOOD, ["train.epochs='many'"], "train", "epochs", "integer"),
        (GOOD, ["train.lr=-1.0"], "train", "lr", "greater than 0"),
        (GOOD, ["selection.threshold=1.5"], "selection", "threshold", "less than or equal to 1"),
        (GOOD, ["data.dataset=mnistt"], "data", "dataset", "valid names"),
        (GOOD, ["experiment.protocol=both"], "experiment", "protocol", "transductive"),
        (GOOD, ["model.backbone=vit"], "model", "backbone", "valid names"),
    ],
)
def test_bad_values_name_section_and_key(tmp_path: Path, text: str, overrides: list[str], section: str, key: str,
                                         fragment: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(RecipeError) as info:
        load_recipe(path, overrides)
    err = info.value
    assert err.file == str(path) and err.section == section and err.key == key, str(err)
    assert fragment in str(err)
    assert "\n" not in str(err)


def test_unknown_section(tmp_path: Path) -> None:
    with pytest.raises(RecipeError) as info:
        load_recipe(write(tmp_path, GOOD + "\n[trian]\nepochs = 3\n"))
    assert "trian" in str(info.value) and "unknown section" in str(info.value)


def test_toml_syntax_error_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="TOML syntax error"):
        load_recipe(write(tmp_path, "[train\nepochs = 3"))
    with pytest.raises(RecipeError, match="file not found"):
        load_recipe(tmp_path / "nope.toml")


def test_override_syntax(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="section.key=value"):
        load_recipe(write(tmp_path, GOOD), ["trainepochs"])
    with pytest.raises(RecipeError, match="section.key"):
        load_recipe(write(tmp_path, GOOD), ["epochs=3"])


def test_switching_a_plugin_drops_the_old_plugins_options(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)  # [selection] method = "threshold" with threshold = 0.9
    rec = load_recipe(path, ["selection.method=all"])
    assert rec.config.selection.method == "all"
    rec = load_recipe(path, ["selection.threshold=0.7", "selection.method=threshold"])  # same plugin: kept
    assert rec.plugin_options["selection"].threshold == 0.7
    with pytest.raises(RecipeError, match=r"\[selection\] threshold: unknown key"):
        load_recipe(path, ["selection.method=all", "selection.threshold=0.5"])  # explicit option for the new one

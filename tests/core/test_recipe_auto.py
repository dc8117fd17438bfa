"""`"auto"` recipe values: the rules reproduce the digits recipes on digits, follow the data elsewhere, stay
"auto" in an unresolved recipe, and a run resolves, prints, saves and logs the concrete values."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from toolkit.errors import RecipeError
from toolkit.recipe.auto import DIGITS, RULES, DataFacts
from toolkit.recipe.loading import load_recipe
from toolkit.run.engine import Engine
from toolkit.track.tracker import MlflowTracker

from conftest import RECIPES

#: The values the digits recipes were measured with (recipes/*_digits.toml).
DIGITS_VALUES = {"train.batch_size": 256, "train.epochs": 30, "pretrain.batch_size": 512, "pretrain.epochs": 300,
                 "model.head_hidden_dim": 512, "calibration.num_miniclusters": 128, "head_init.batch_size": 1000}
#: Rules measured to do as well on digits with a cheaper value than the digits recipe's (the rule's `why` says so):
#: the general GCC recipe's generator pretraining, 50 epochs against gcc_digits.toml's 150.
CHEAPER_ON_DIGITS = {"generation.pretrain_epochs": 50}


def test_on_digits_every_rule_gives_the_digits_recipes_value() -> None:
    assert set(DIGITS_VALUES) | set(CHEAPER_ON_DIGITS) == set(RULES)
    assert {key: rule.value(DIGITS) for key, rule in RULES.items()} == DIGITS_VALUES | CHEAPER_ON_DIGITS
    assert all("digits" in RULES[key].why for key in CHEAPER_ON_DIGITS)


@pytest.mark.parametrize("n", [40, 200, 504, 735, 1797, 60000])
def test_generator_pretraining_follows_the_image_count(n: int) -> None:
    """Small sets get more passes (at least about 300 steps of 128), large ones stay at 50 epochs."""
    epochs = RULES["generation.pretrain_epochs"].value(DataFacts(n=n, k=10, image_size=(8, 8), channels=1))
    assert 50 <= epochs <= 150
    if n <= 267:  # 40,000 passes would be more than 150 epochs
        assert epochs == 150
    elif n >= 800:  # 40,000 passes would be under 50 epochs
        assert epochs == 50
    else:
        assert 38_000 <= epochs * n <= 42_000


@pytest.mark.parametrize("n", [40, 64, 200, 504, 1797, 5000, 60000])
def test_sizes_follow_the_data(n: int) -> None:
    facts = DataFacts(n=n, k=10, image_size=(32, 32), channels=3)
    value = {key: rule.value(facts) for key, rule in RULES.items()}
    assert value["train.batch_size"] == min(n, 256) and value["pretrain.batch_size"] == min(n, 512)
    assert value["model.head_hidden_dim"] <= n // 2 or value["model.head_hidden_dim"] == 16
    assert value["head_init.batch_size"] <= n and value["calibration.num_miniclusters"] <= max(n // 8, 20)
    assert 10 <= value["train.epochs"] <= 30 and 50 <= value["pretrain.epochs"] <= 300
    if n >= 5000:  # large data: epochs shrink with the steps each epoch takes
        assert value["pretrain.epochs"] < 300 and (value["train.epochs"] < 30 or n < 50000)
    if n <= 512:  # small data: one whole-set batch per step, the digits epochs
        assert value["pretrain.epochs"] == 300 and value["train.epochs"] == 30


AUTO = ['train.batch_size="auto"', 'pretrain.batch_size="AUTO"', 'pretrain.epochs="auto"']


def test_an_unresolved_recipe_keeps_auto_and_resolve_fills_it_in() -> None:
    recipe = load_recipe(RECIPES / "baseline.toml", AUTO)
    assert sorted(recipe.auto) == ["pretrain.batch_size", "pretrain.epochs", "train.batch_size", "train.epochs"]
    tree = tomllib.loads(recipe.to_toml())
    assert tree["train"]["batch_size"] == "auto" and tree["pretrain"]["epochs"] == "auto"
    assert recipe.flat_params()["pretrain.batch_size"] == "auto"
    small = recipe.resolve(DataFacts(n=200, k=2, image_size=(25, 25), channels=1))
    assert small.config.train.batch_size == 200 and small.plugin_options["pretrain"].batch_size == 200
    assert small.plugin_options["pretrain"].epochs == 300 and not small.auto
    assert small.derived["train.batch_size"][0] == 200 and "up to 256" in small.derived["train.batch_size"][1]
    assert tomllib.loads(small.to_toml())["train"]["batch_size"] == 200


def test_auto_on_a_key_the_plugin_does_not_have_is_a_one_line_error() -> None:
    with pytest.raises(RecipeError, match=r"\[calibration\] num_miniclusters: unknown key"):
        load_recipe(RECIPES / "baseline.toml", ['calibration.num_miniclusters="auto"'])


TINY = ["pretrain.epochs=2", "head_init.epochs=1", "train.epochs=2", "model.hidden_dims=[32]", "data.dataset=lfw_subset"]


def test_a_run_derives_prints_saves_and_logs_the_values(tmp_path: Path, mlflow_store: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from rich.console import Console

    from toolkit.commands.progress import WarningPrinter

    out = tmp_path / "run"
    recipe = load_recipe(RECIPES / "baseline.toml", [*TINY, 'train.batch_size="auto"', 'pretrain.batch_size="auto"'])
    console = Console(stderr=True, width=200)
    summary = Engine(recipe, out, device="cpu", observers=[MlflowTracker(), WarningPrinter(console)]).run()
    saved = tomllib.loads((out / "recipe.toml").read_text())
    assert saved["train"]["batch_size"] == 200 and saved["pretrain"]["batch_size"] == 200  # 200 images
    run = MlflowClient(mlflow_store).get_run(summary["mlflow_run_id"])
    assert run.data.params["train.batch_size"] == "200" and run.data.params["pretrain.batch_size"] == "200"
    assert run.data.tags["auto_keys"] == "pretrain.batch_size,train.batch_size"
    err = capsys.readouterr().err
    assert "auto: train.batch_size = 200" in err and "auto: pretrain.batch_size = 200" in err


@pytest.mark.parametrize("method", ["baseline", "cdc", "spice", "drc", "gcc"])
def test_a_general_recipe_on_digits_is_its_digits_recipe(method: str) -> None:
    """What `toolkit cluster --method M` runs: resolved on digits, every derived size is the digits recipe's,
    so the digits measurements still describe it (only names, colour = "auto" and, for the baseline, the
    estimated-share balance, for the baseline and GCC the head-init partition chosen by silhouette, and GCC's
    cheaper generator, measured as good on digits, differ)."""
    from toolkit.run.cluster_folder import general_recipe

    general = load_recipe(general_recipe(method)).resolve(DIGITS).resolved()
    digits = load_recipe(RECIPES / f"{method}_digits.toml").resolved()
    for tree in (general, digits):
        tree["experiment"].pop("name"), tree["experiment"].pop("description")
        tree["pretrain"].pop("colour", None)
        tree.pop("tune", None)
    if method == "baseline":
        assert general["selection"].pop("class_balance") == "estimated"
        digits["selection"].pop("class_balance")
    if method in ("baseline", "gcc"):
        assert general["head_init"].pop("partition") == "auto"
        digits["head_init"].pop("partition", None)
    if method == "gcc":
        assert (general["generation"].pop("pretrain_epochs"), general["generation"].pop("sample_steps")) == (50, 20)
        assert (digits["generation"].pop("pretrain_epochs"), digits["generation"].pop("sample_steps")) == (150, 50)
    assert general == digits

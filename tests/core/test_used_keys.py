"""A run's MLflow params are the recipe keys it reads (plus the facts of its data), and its name says how it
differs from the recipe file (issue: 106-120 params, half unused; two runs both named baseline_digits-s0)."""

from __future__ import annotations

from types import SimpleNamespace

from conftest import RECIPES

from toolkit.recipe.loading import load_recipe
from toolkit.recipe.used_keys import used_params
from toolkit.track.records import override_summary, params_of, run_name, trial_run_name


def test_plain_digits_run_logs_only_what_it_reads() -> None:
    recipe = load_recipe(RECIPES / "baseline_digits.toml")
    flat = recipe.flat_params()
    used = used_params(flat)
    assert len(used) < 0.7 * len(flat)
    dropped = ("tune.num_samples", "data.num_samples", "data.synthetic_size", "data.k_range", "data.download",
               "data.strict", "data.test_fraction", "experiment.description", "views.weak.blur", "train.momentum")
    assert all(key in flat for key in dropped) and not any(key in used for key in dropped)
    for key in ("train.lr", "views.weak.degrees", "pretrain.method", "selection.threshold", "experiment.seed"):
        assert used[key] == flat[key]


def test_keys_are_kept_where_they_are_read() -> None:
    synthetic = used_params(load_recipe(RECIPES / "baseline_digits.toml", ["data.dataset=synthetic"]).flat_params())
    assert "data.num_samples" in synthetic and "data.synthetic_size" in synthetic
    auto_k = used_params(load_recipe(RECIPES / "baseline_digits.toml", ['data.num_clusters="auto"']).flat_params())
    assert "data.k_range" in auto_k and "data.k_criterion" in auto_k
    sgd = used_params(load_recipe(RECIPES / "baseline_digits.toml", ['train.optimizer="sgd"']).flat_params())
    assert "train.momentum" in sgd
    flat = load_recipe(RECIPES / "baseline_digits.toml").flat_params()
    assert "views.weak.blur" in used_params(flat, searched={"views.weak.blur"})  # a searched key always stays


def test_params_carry_the_loaded_data_facts() -> None:
    recipe = load_recipe(RECIPES / "baseline_digits.toml")
    run = SimpleNamespace(recipe=recipe, data={"num_images": 1797, "num_clusters": 10, "image_size": "8x8"})
    params = params_of(run)
    assert params["data.num_images"] == "1797" and params["data.image_size"] == "8x8"
    assert not any(k.startswith("tune.") for k in params)


def test_names_tell_runs_apart() -> None:
    assert override_summary(["train.lr=0.001", "experiment.seed=3", "data.root=/a/b/folder/"]) == "lr=0.001,root=folder"
    assert override_summary(["pretrain.epochs=2", "model.hidden_dims=[32]", "train.epochs=5"]) == \
        "pretrain.epochs=2,hidden_dims=[32],train.epochs=5"  # a shared last part keeps its section
    long = override_summary([f"views.strong.degrees={d}" for d in range(30)])
    other = override_summary([f"views.strong.degrees={d}" for d in range(1, 31)])
    assert len(long) <= 60 and long != other  # cut, and a hash keeps them apart
    plain = load_recipe(RECIPES / "baseline_digits.toml")
    changed = load_recipe(RECIPES / "baseline_digits.toml", ["train.lr=0.002"])
    names = {run_name(SimpleNamespace(recipe=r)) for r in (plain, changed)}
    assert names == {"baseline_digits-s0", "baseline_digits-s0 lr=0.002"}
    assert trial_run_name("a1_00003", "baseline_digits-s0 lr=0.002") == "trial-a1_00003 lr=0.002"

"""The pretrained-backbone cache key: K is a later stage's business unless the pretrain plugin makes the head."""

from __future__ import annotations

import copy

from toolkit.run.backbone_cache import backbone_key

RECIPE = {
    "experiment": {"seed": 0},
    "data": {"dataset": "digits", "num_clusters": "auto", "k_range": [2, 50], "long_tail": None},
    "model": {"backbone": "mlp", "head_hidden_dim": 128},
    "pretrain": {"method": "simclr", "epochs": 300},
    "views": {"weak": {"noise": 0.05}},
}


def _with(section: str, key: str, value: object) -> dict:
    recipe = copy.deepcopy(RECIPE)
    recipe[section][key] = value
    return recipe


def test_k_and_head_size_do_not_change_the_key_of_a_headless_pretrain() -> None:
    key = backbone_key(RECIPE, "fp")
    assert backbone_key(_with("data", "num_clusters", 7), "fp") == key
    assert backbone_key(_with("data", "k_range", [2, 20]), "fp") == key
    assert backbone_key(_with("model", "head_hidden_dim", 64), "fp") == key


def test_what_determines_the_backbone_changes_the_key() -> None:
    key = backbone_key(RECIPE, "fp")
    assert backbone_key(_with("data", "long_tail", 10), "fp") != key
    assert backbone_key(_with("pretrain", "epochs", 100), "fp") != key
    assert backbone_key(_with("experiment", "seed", 1), "fp") != key
    assert backbone_key(RECIPE, "other data") != key


def test_a_pretrain_that_makes_the_head_keys_on_k() -> None:
    key = backbone_key(RECIPE, "fp", includes_head=True)
    assert backbone_key(_with("data", "num_clusters", 7), "fp", includes_head=True) != key
    assert backbone_key(_with("model", "head_hidden_dim", 64), "fp", includes_head=True) != key

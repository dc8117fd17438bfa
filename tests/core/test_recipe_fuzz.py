"""Property-based: any malformed recipe ends in a one-line RecipeError, never another exception."""

from __future__ import annotations

import tempfile
import tomllib
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toolkit.errors import UserError
from toolkit.recipe.loading import load_recipe

from conftest import RECIPES

BASE_TEXT = (RECIPES / "baseline_digits.toml").read_text()
BASE = tomllib.loads(BASE_TEXT)
SECTIONS = ["experiment", "data", "model", "train", "pretrain", "head_init", "selection", "views"]
JUNK = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
                 st.booleans(), st.lists(st.integers(-3, 3), max_size=3), st.just({"x": 1}))


def _load(text: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "r.toml"
        path.write_text(text, encoding="utf-8")
        try:
            load_recipe(path)
        except UserError as exc:
            message = str(exc)
            assert "\n" not in message and str(path) in message, message


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SECTIONS), st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12), JUNK)
def test_wrong_values_and_unknown_keys(section: str, key: str, value: object) -> None:
    import tomli_w

    tree = {k: dict(v) for k, v in BASE.items()}
    target = tree.setdefault(section, {})
    if section == "views":
        target = target.setdefault("weak", {})
    existing = list(target)
    if existing and len(key) % 2 == 0:
        key = existing[len(key) % len(existing)]  # corrupt an existing key's value
    target[key] = value
    try:
        text = tomli_w.dumps(tree)
    except (TypeError, ValueError):
        return  # not representable in TOML (e.g. NaN in some writers)
    _load(text)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, len(BASE_TEXT) - 1), st.sampled_from(["", "[", "]", "=", '"', "x", "\n", "-1", "1e9"]))
def test_mutated_toml_text(position: int, insert: str) -> None:
    _load(BASE_TEXT[:position] + insert + BASE_TEXT[position + 1:])


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(["pretrain", "head_init", "selection", "calibration", "generation"]),
       st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=10))
def test_unknown_plugins(slot: str, name: str) -> None:
    _load(BASE_TEXT + f'\n[{slot}]\nmethod = "{name}"\n' if slot not in BASE else
          BASE_TEXT.replace(f'[{slot}]\nmethod = "{BASE[slot]["method"]}"', f'[{slot}]\nmethod = "{name}"'))

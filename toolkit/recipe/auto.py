"""`"auto"` recipe values: sizes and lengths derived from the data once it is loaded.

A recipe may write `"auto"` for any key in RULES (`[train] batch_size = "auto"`). Loading validates the
recipe with the rule's value for scikit-learn's digits (so a typo still fails before anything runs);
the engine calls `resolve` with the loaded data's facts, which replaces each "auto" by the rule's value,
prints it once and logs it (the concrete value as the MLflow param, the list of derived keys as a tag).
Each rule says which measurement chose it (benchmarks/RESULTS.md). `--set key=value` overrides a rule.
A key not in RULES keeps "auto" for its plugin to interpret (e.g. simclr's `colour = "auto"`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class DataFacts:
    """What the rules may look at: image count, cluster count (0 while it is to be estimated), shape."""

    n: int
    k: int
    image_size: tuple[int, int]
    channels: int


#: The data the digits recipes were tuned on; a rule gives there the value those recipes use.
DIGITS = DataFacts(n=1797, k=10, image_size=(8, 8), channels=1)


@dataclass(frozen=True)
class Rule:
    value: Callable[[DataFacts], Any]
    why: str


def _pow2_at_most(x: float) -> int:
    return 2 ** max(int(math.floor(math.log2(max(x, 1.0)))), 0)


def _steps(n: int, batch: int) -> int:
    return max(n // batch, 1)


def _train_batch(f: DataFacts) -> int:
    return max(min(256, f.n), 2)


def _pretrain_batch(f: DataFacts) -> int:
    return max(min(512, f.n), 4)


def _epochs_for(steps: int, f: DataFacts, batch: int, low: int, high: int) -> int:
    return int(min(max(round(steps / _steps(f.n, batch)), low), high))


# Measured on lfw_subset (200 images, benchmarks/RESULTS.md, 2026-12-03, baseline, seeds 0-2): batches of N/4
# and N/2 with the step counts of digits gave ACC 0.700 +- 0.044; the whole set as one batch and the digits
# epochs 0.798 +- 0.008. Small data wants few, whole-set steps, hence min(cap, N) and epoch caps at the
# digits values rather than a fixed number of steps.
RULES: dict[str, Rule] = {
    "train.batch_size": Rule(
        _train_batch,
        "N up to 256 (256 on digits; on 200 images the whole set beat N/4 by 0.10 ACC)"),
    "train.epochs": Rule(
        lambda f: _epochs_for(3000, f, _train_batch(f), 10, 30),
        "30 (digits), fewer on large data: at most about 3000 optimiser steps, at least 10 epochs"),
    "pretrain.batch_size": Rule(
        _pretrain_batch,
        "N up to 512 (512 on digits)"),
    "pretrain.epochs": Rule(
        lambda f: _epochs_for(900, f, _pretrain_batch(f), 50, 300),
        "about 900 optimiser steps (digits: 300 epochs x 3 batches), as 50-300 epochs"),
    "model.head_hidden_dim": Rule(
        lambda f: max(min(512, _pow2_at_most(f.n / 2)), 16),
        "the power of two at most N/2, up to 512 (CDC's hidden prototypes must not outnumber the images)"),
    "calibration.num_miniclusters": Rule(
        lambda f: max(min(128, f.n // 8), 2 * max(f.k, 1)),
        "N/8, up to 128 (the digits value), at least 2K: mini-clusters of about 8 images or more"),
    "generation.pretrain_epochs": Rule(
        lambda f: int(min(max(round(40_000 / max(f.n, 1)), 50), 150)),
        "about 40,000 image passes of the generator before the first round, as 50-150 epochs: 50 on digits "
        "(ACC as with 150 over seeds 0-2), 150 on 200 images (100 steps there lost 0.14 ACC on one seed)"),
    "head_init.batch_size": Rule(
        lambda f: min(1000, f.n),
        "the whole data set up to 1000 images (SPICE's head-init batch on digits)"),
}


def facts_of(n: int, k: int, image_size: tuple[int, int], channels: int) -> DataFacts:
    return DataFacts(n=int(n), k=int(k), image_size=(int(image_size[0]), int(image_size[1])), channels=int(channels))


def auto_keys(tree: dict[str, Any]) -> list[str]:
    """Dotted keys of RULES that the recipe tree sets to "auto" (any case)."""
    found = []
    for dotted in RULES:
        section, key = dotted.split(".", 1)
        node = tree.get(section)
        if isinstance(node, dict) and isinstance(node.get(key), str) and node[key].strip().lower() == "auto":
            found.append(dotted)
    return found


def substitute(tree: dict[str, Any], keys: list[str], facts: DataFacts) -> dict[str, Any]:
    """A copy of `tree` whose `keys` hold their rule's value for `facts`."""
    out = {section: (dict(value) if isinstance(value, dict) else value) for section, value in tree.items()}
    for dotted in keys:
        section, key = dotted.split(".", 1)
        out[section][key] = RULES[dotted].value(facts)
    return out


def restore(tree: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    """A copy of `tree` with "auto" back at `keys` (how an unresolved recipe prints and saves)."""
    out = {section: (dict(value) if isinstance(value, dict) else value) for section, value in tree.items()}
    for dotted in keys:
        section, key = dotted.split(".", 1)
        if isinstance(out.get(section), dict):
            out[section][key] = "auto"
    return out

"""Ground truth serves evaluation only: no plugin can reach the labels during training."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits

from toolkit.api.context import Batch, EpochState, RunContext, Selection
from toolkit.run.engine import Engine
from toolkit.recipe.loading import load_recipe

from conftest import RECIPES

SEEN: list[object] = []


def _reachable(obj: object, depth: int = 0) -> list[object]:
    """Objects reachable through dataclass fields and plain attributes (no modules/functions)."""
    if depth > 3:
        return []
    out = [obj]
    if dataclasses.is_dataclass(obj):
        children = [getattr(obj, f.name) for f in dataclasses.fields(obj)]
    elif isinstance(obj, (list, tuple)):
        children = list(obj)
    elif isinstance(obj, dict):
        children = list(obj.values())
    elif type(obj).__module__.startswith("toolkit") and hasattr(obj, "__dict__"):
        # plain toolkit objects (e.g. the event emitter): every public attribute
        children = [v for k, v in vars(obj).items() if not k.startswith("_")]
    else:
        children = []
    for child in children:
        out.extend(_reachable(child, depth + 1))
    return out


def _holds_labels(obj: object, labels: np.ndarray) -> bool:
    for item in _reachable(obj):
        if isinstance(item, torch.Tensor) and item.ndim == 1 and item.numel() == labels.size:
            if torch.equal(item.cpu().long(), torch.as_tensor(labels)):
                return True
        if isinstance(item, np.ndarray) and item.shape == labels.shape and np.array_equal(item, labels):
            return True
        if hasattr(item, "labels") and not isinstance(item, Selection):
            return True
    return False


def test_plugins_never_receive_ground_truth(tmp_path: Path, mlflow_store: str) -> None:
    recipe = load_recipe(RECIPES / "baseline_digits.toml", ["pretrain.epochs=1", "head_init.epochs=1", "train.epochs=1",
                                                            "model.hidden_dims=[32]"])
    base = recipe.plugin_classes["selection"]

    class Spy(base):  # type: ignore[misc, valid-type]
        def on_epoch_start(self, ctx: RunContext, state: EpochState) -> None:
            SEEN.extend([ctx, state])
            super().on_epoch_start(ctx, state)

        def select(self, batch: Batch, confidence: torch.Tensor):  # type: ignore[no-untyped-def]
            SEEN.extend([batch, confidence])
            return super().select(batch, confidence)

    recipe.plugin_classes["selection"] = Spy
    Engine(recipe, tmp_path / "out", device="cpu").run()
    labels = load_digits().target.astype(np.int64)
    kinds = {type(o).__name__ for o in SEEN}
    assert {"RunContext", "EpochState", "Batch"} <= kinds
    assert not hasattr(SEEN[0].data, "labels")
    for obj in SEEN:
        assert not _holds_labels(obj, labels), type(obj).__name__
    # the check itself works: a context that did carry labels would be caught, also behind a public attribute
    assert _holds_labels({"x": torch.as_tensor(labels)}, labels)
    from toolkit.run.events import EventBus
    from toolkit.run.label_probe import PseudoLabelProbe

    leaky = EventBus([PseudoLabelProbe(labels, EventBus())])
    leaky.observers[0].truth = labels  # a public copy, as a careless observer might keep
    assert _holds_labels(leaky, labels)


def test_a_selection_that_tries_to_read_labels_fails(tmp_path: Path, mlflow_store: str) -> None:
    import pytest

    from toolkit.errors import TrainingError

    recipe = load_recipe(RECIPES / "baseline_digits.toml", ["pretrain.epochs=1", "head_init.epochs=1", "train.epochs=1",
                                                            "model.hidden_dims=[32]"])
    base = recipe.plugin_classes["selection"]

    class Cheater(base):  # type: ignore[misc, valid-type]
        def on_epoch_start(self, ctx: RunContext, state: EpochState) -> None:
            self.truth = ctx.data.labels  # there is no such attribute: the run must fail, naming the plugin

    recipe.plugin_classes["selection"] = Cheater
    with pytest.raises(TrainingError, match="selection plugin 'threshold' raised AttributeError in on_epoch_start\(\): .*labels"):
        Engine(recipe, tmp_path / "out", device="cpu").run()

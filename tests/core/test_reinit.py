"""[train] reinit (SPICE's stage 3 in the released code): the selection plugin reads the head-init model's
predictions, then training starts from fresh random weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from toolkit.errors import RecipeError
from toolkit.recipe.loading import validate
from toolkit.run.engine import Engine
from toolkit.run.self_label import Models

TINY: dict[str, Any] = {
    "experiment": {"device": "cpu"},
    "data": {"dataset": "synthetic", "num_samples": 200, "num_classes": 3, "synthetic_size": 8,
             "synthetic_channels": 1},
    "model": {"backbone": "mlp", "hidden_dims": [16]},
    "head_init": {"method": "kmeans_pseudo_label"},
    "selection": {"method": "threshold", "threshold": 0.5},
    "train": {"epochs": 1, "batch_size": 64},
}


def _run(tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch, **train: Any) -> dict[str, Any]:
    """What the first self-labeling forward started from, what selection saw at epoch 1, and the summary."""
    seen: dict[str, Any] = {}
    forward = Models.forward

    def first(self: Models, images: torch.Tensor) -> Any:
        seen.setdefault("weights", [p.detach().clone() for p in (*self.backbone.parameters(), *self.head.parameters())])
        return forward(self, images)

    from deepclust_baseline.select_threshold import ThresholdSelection

    start = ThresholdSelection.on_epoch_start

    def state_seen(self: ThresholdSelection, ctx: Any, state: Any) -> None:
        seen.setdefault("probs", state.probs.clone())
        start(self, ctx, state)

    monkeypatch.setattr(Models, "forward", first)
    monkeypatch.setattr(ThresholdSelection, "on_epoch_start", state_seen)
    recipe = validate({**TINY, "train": {**TINY["train"], **train}}, "tiny")
    seen["summary"] = Engine(recipe, tmp_path / name, device="cpu").run()
    monkeypatch.undo()
    return seen


def test_selection_sees_the_head_init_model_then_training_starts_afresh(tmp_path: Path, mlflow_store: str,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    kept = _run(tmp_path, "kept", monkeypatch)
    fresh = _run(tmp_path, "fresh", monkeypatch, reinit=True)
    again = _run(tmp_path, "again", monkeypatch, reinit=True)
    assert torch.equal(kept["probs"], fresh["probs"])  # the reliable/threshold choice reads stage 2's model
    assert not any(torch.equal(a, b) for a, b in zip(kept["weights"], fresh["weights"]) if a.ndim > 1)
    assert all(torch.equal(a, b) for a, b in zip(fresh["weights"], again["weights"]))  # seeded


def test_reinit_refuses_a_frozen_backbone() -> None:
    with pytest.raises(RecipeError, match=r"\[train\] reinit"):
        validate({"train": {"reinit": True, "freeze_backbone": True}})

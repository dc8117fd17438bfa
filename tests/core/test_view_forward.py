"""[train] view_forward: the weak and strong views go through the network as one batch (one BatchNorm batch,
FixMatch) or one after the other (each view its own BatchNorm statistics, as the CDC and SCAN code)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from toolkit.recipe.loading import validate
from toolkit.run.engine import Engine
from toolkit.run.self_label import Models

TINY: dict[str, Any] = {
    "experiment": {"device": "cpu"},
    "data": {"dataset": "digits"},
    "model": {"backbone": "mlp", "hidden_dims": [32]},
    "train": {"epochs": 1, "batch_size": 256},
}


@pytest.mark.parametrize("mode, sizes", [("joint", [512]), ("separate", [256, 256])])
def test_views_are_forwarded_as_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str,
                                      sizes: list[int]) -> None:
    seen: list[int] = []
    forward = Models.forward

    def counting(self: Models, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        seen.append(len(images))
        return forward(self, images)

    monkeypatch.setattr(Models, "forward", counting)
    recipe = validate({**TINY, "train": {**TINY["train"], "view_forward": mode}}, "tiny")
    summary = Engine(recipe, tmp_path / "run", device="cpu", observers=[]).run()
    steps = 1797 // 256
    assert seen == sizes * steps and 0.0 <= summary["acc"] <= 1.0

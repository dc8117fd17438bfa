"""[train] schedule: the self-labeling learning rate follows constant, cosine or warm-up + cosine curves by
optimiser step, with SGD Nesterov available, and a run logs the rate it reached each epoch."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from toolkit.errors import RecipeError
from toolkit.recipe.loading import validate
from toolkit.run.engine import Engine
from toolkit.run.events import Observer
from toolkit.run.lr_schedule import lr_factor

TINY: dict[str, Any] = {
    "experiment": {"device": "cpu"},
    "data": {"dataset": "digits"},
    "model": {"backbone": "mlp", "hidden_dims": [32]},
    "train": {"epochs": 4, "batch_size": 256, "lr": 0.01},
}


def test_curves() -> None:
    assert [lr_factor("constant", s, 10) for s in (0, 5, 9)] == [1.0, 1.0, 1.0]
    cosine = [lr_factor("cosine", s, 10, min_ratio=0.1) for s in range(11)]
    assert cosine[0] == 1.0 and cosine[10] == pytest.approx(0.1) and cosine[5] == pytest.approx(0.55)
    assert all(a > b for a, b in zip(cosine, cosine[1:]))
    warm = [lr_factor("warmup_cosine", s, 10, warmup_steps=4) for s in range(10)]
    assert warm[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0]) and warm[4] == pytest.approx(1.0)
    assert all(a > b for a, b in zip(warm[4:], warm[5:]))
    fixmatch = [lr_factor("fixmatch_cosine", s, 16) for s in (0, 8, 16)]  # cos(7 pi k / (16 K))
    assert fixmatch == pytest.approx([1.0, math.cos(7 * math.pi / 32), math.cos(7 * math.pi / 16)])


def test_options_validate() -> None:
    t = validate({"train": {"schedule": "warmup_cosine", "warmup_epochs": 1.5, "optimizer": "sgd",
                            "nesterov": True}}).config.train
    assert (t.schedule, t.warmup_epochs, t.nesterov) == ("warmup_cosine", 1.5, True)
    with pytest.raises(RecipeError, match=r"\[train\] schedule"):
        validate({"train": {"schedule": "step"}})


class Rates(Observer):
    def __init__(self) -> None:
        self.rates: list[float] = []

    def on_epoch_end(self, *, stage: str, epoch: int, metrics: dict[str, float], state: Any) -> None:
        if stage == "self_label" and "lr" in metrics:
            self.rates.append(metrics["lr"])


def _rates(tmp_path: Path, **train: Any) -> tuple[list[float], torch.optim.Optimizer]:
    recipe = validate({**TINY, "train": {**TINY["train"], **train}}, "tiny")
    seen = Rates()
    engine = Engine(recipe, tmp_path / "run", device="cpu", observers=[seen])
    built: list[torch.optim.Optimizer] = []
    make = engine._optimizer
    engine._optimizer = lambda *a: built.append(make(*a)) or built[-1]  # type: ignore[method-assign]
    engine.run()
    return seen.rates, built[0]


def test_a_run_follows_the_schedule_and_logs_its_rate(tmp_path: Path) -> None:
    rates, optimizer = _rates(tmp_path, schedule="warmup_cosine", warmup_epochs=1, min_lr_ratio=0.1,
                              optimizer="sgd", nesterov=True)
    steps = 1797 // 256  # per epoch (full batches)
    total = 4 * steps
    expected = [0.01 * lr_factor("warmup_cosine", e * steps - 1, total, steps, 0.1) for e in range(1, 5)]
    assert rates == pytest.approx(expected)  # the rate of each epoch's last step
    assert rates[0] == pytest.approx(0.01) and rates[-1] < rates[1] and math.isclose(expected[0], 0.01)
    assert optimizer.param_groups[0]["nesterov"] and optimizer.param_groups[0]["base_lr"] == 0.01


def test_constant_schedule_changes_nothing(tmp_path: Path) -> None:
    rates, optimizer = _rates(tmp_path, epochs=1)
    assert rates == [] and optimizer.param_groups[0]["lr"] == 0.01  # no lr metric, the rate untouched

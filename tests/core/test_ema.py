"""[train] ema_decay: evaluation and the final checkpoint use an exponential moving average of backbone and
head (FixMatch, SPICE's stage 3), and resume points keep the average."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from toolkit.files import load_safe
from toolkit.recipe.loading import validate
from toolkit.run.engine import Engine
from toolkit.run.folder import RunFolder

TINY: dict[str, Any] = {
    "experiment": {"device": "cpu"},
    "data": {"dataset": "digits"},
    "model": {"backbone": "mlp", "hidden_dims": [32]},
    "train": {"epochs": 2, "batch_size": 256, "lr": 0.01},
}


def _run(tmp_path: Path, decay: float) -> tuple[list[torch.Tensor], dict[str, Any], Path]:
    """The training head's final weights, the final checkpoint and the run folder."""
    recipe = validate({**TINY, "train": {**TINY["train"], "ema_decay": decay}}, "tiny")
    out = tmp_path / f"run-{decay}"
    engine = Engine(recipe, out, device="cpu", observers=[])
    built: list[torch.optim.Optimizer] = []
    make = engine._optimizer
    engine._optimizer = lambda *a: built.append(make(*a)) or built[-1]  # type: ignore[method-assign]
    engine.run()
    trained = [p.detach().clone() for p in built[0].param_groups[0]["params"]]  # group 0: the head
    return trained, load_safe(RunFolder(out).final_checkpoint), out


def _head(ckpt: dict[str, Any]) -> list[torch.Tensor]:
    """The head's parameters in parameters() order (its state dict less BatchNorm's buffers)."""
    return [v for k, v in ckpt["head"].items() if "running_" not in k and "num_batches_tracked" not in k]


def test_final_checkpoint_holds_the_average(tmp_path: Path) -> None:
    trained, ckpt, out = _run(tmp_path, 0.999)  # 14 steps at 0.999: the average stays near the first step
    assert [t.shape for t in trained] == [t.shape for t in _head(ckpt)]
    gaps = [float((a - b).abs().max()) for a, b in zip(trained, _head(ckpt))]
    assert max(gaps) > 1e-3  # saved and evaluated: the average, not the trained weights
    assert "ema" in load_safe(RunFolder(out).last_checkpoint)  # a resume point keeps it
    trained, ckpt, _ = _run(tmp_path, 1e-9)  # an average that forgets at once is the trained model
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(trained, _head(ckpt)))

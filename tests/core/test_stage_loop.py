"""The epoch loop plugin-owned stages share (toolkit.api.stage_loop): resume, seeding, checks, logging."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from toolkit.api import Checkpointed, RunContext, TrainingError, UnlabeledImages
from toolkit.api.context import PluginEvents
from toolkit.run.events import EventBus


class Recorder:
    """An observer that keeps every event it gets."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        if name.startswith("on_"):
            return lambda **kw: self.events.append((name, kw))
        raise AttributeError(name)


def make_ctx(folder: Path | None, recorder: Recorder, seed: int = 3) -> RunContext:
    images = UnlabeledImages(torch.zeros(10, 1, 4, 4, dtype=torch.uint8), "tiny")
    return RunContext(images, 2, torch.device("cpu"), seed, None, PluginEvents(EventBus([recorder])),  # type: ignore[arg-type]
                      lambda: nn.Identity(), lambda d: nn.Linear(d, 2), checkpoint_dir=folder)


def train(ctx: RunContext, epochs: int, stop_after: int | None = None, seed_global: bool = False) -> dict[str, Any]:
    """A toy stage: a linear layer fitted to random targets, one step per epoch; returns what it drew."""
    with ctx.seeded():
        layer = nn.Linear(3, 1)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    count = torch.zeros((), dtype=torch.long)
    loop = ctx.epoch_loop("toy", epochs, Checkpointed(layer=layer, optimizer=opt, count=count), salt=(7,),
                          plugin="toy", seed_global=seed_global)
    draws = []
    for epoch in loop:
        x = torch.randn(4, 3, generator=epoch.generator)
        noise = torch.rand(1).item() if seed_global else 0.0
        draws.append((epoch.number, x.sum().item(), noise))
        loss = (layer(x) ** 2).mean() + noise
        opt.zero_grad()
        loss.backward()
        opt.step()
        count += 1
        epoch.report(loss=loss.item())
        if stop_after is not None and epoch.number == stop_after:
            break
    return {"weight": layer.weight.detach().clone(), "draws": draws, "count": int(count),
            "resumed_from": loop.resumed_from, "metrics": loop.metrics}


def test_a_resumed_stage_ends_exactly_as_an_uninterrupted_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOOLKIT_STAGE_CHECKPOINT_SECONDS", "0")
    whole = train(make_ctx(tmp_path / "a", Recorder()), 5, seed_global=True)
    # a kill inside epoch 3: epochs 1-2 were saved, epoch 3's work is lost and redone
    train(make_ctx(tmp_path / "b", Recorder()), 5, stop_after=3, seed_global=True)
    rec = Recorder()
    resumed = train(make_ctx(tmp_path / "b", rec), 5, seed_global=True)
    assert resumed["resumed_from"] == 2
    assert [d[0] for d in resumed["draws"]] == [3, 4, 5]
    assert resumed["draws"] == whole["draws"][2:]
    assert torch.equal(resumed["weight"], whole["weight"])
    assert resumed["count"] == whole["count"] == 5  # a tensor part is restored in place
    assert any(name == "on_warning" and "resuming after epoch 2" in kw["message"] for name, kw in rec.events)


def test_every_epoch_is_logged_and_the_stage_announced(tmp_path: Path) -> None:
    rec = Recorder()
    out = train(make_ctx(tmp_path, rec), 3)
    names = [name for name, _ in rec.events]
    assert names[0] == "on_stage_start" and rec.events[0][1] == {"stage": "toy", "total": 3}
    assert names[-1] == "on_stage_end"
    logged = [kw["epoch"] for name, kw in rec.events if name == "on_epoch_end"]
    assert logged == [1, 2, 3]
    assert set(out["metrics"]) == {"loss"}
    assert (tmp_path / "toy.pt").is_file()  # the last epoch is always saved


def test_the_global_rng_is_left_as_it_was(tmp_path: Path) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train(make_ctx(tmp_path, Recorder()), 2, seed_global=True)
    assert torch.equal(torch.rand(3), expected)


def test_seeded_blocks_give_the_same_modules_for_the_same_seed() -> None:
    ctx = make_ctx(None, Recorder(), seed=5)
    with ctx.seeded():
        a = nn.Linear(4, 4).weight.detach().clone()
    with ctx.seeded():
        b = nn.Linear(4, 4).weight.detach().clone()
    with ctx.seeded(1):
        c = nn.Linear(4, 4).weight.detach().clone()
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_a_non_finite_metric_stops_the_stage_naming_it(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, Recorder())
    with pytest.raises(TrainingError, match=r"stage toy \(toy\), epoch 1: non-finite loss"):
        for epoch in ctx.epoch_loop("toy", 3, Checkpointed(), salt=(1,), plugin="toy"):
            epoch.report(loss=float("nan"), other=1.0)


def test_a_resume_point_of_another_shape_is_refused_in_one_line(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, Recorder())
    layer = nn.Linear(2, 2)
    for epoch in ctx.epoch_loop("toy", 1, Checkpointed(layer=layer), salt=(1,), plugin="toy"):
        epoch.report(loss=0.0)
    with pytest.raises(TrainingError, match="lacks head"):
        ctx.epoch_loop("toy", 2, Checkpointed(layer=layer, head=nn.Linear(2, 2)), salt=(1,), plugin="toy")

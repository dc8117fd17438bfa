"""[train] compile / channels_last / data_on_device: validation, CPU no-ops, and tiny CPU runs that still train."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from toolkit.run.speed import Speed, compile_supported
from toolkit.run.engine import Engine
from toolkit.errors import RecipeError
from toolkit.recipe.loading import validate

TINY: dict[str, Any] = {
    "experiment": {"device": "cpu"},
    "data": {"dataset": "digits"},
    "model": {"backbone": "small_cnn", "width": 4},
    "views": {"strong": {"noise": 0.1}},
    "train": {"epochs": 1, "batch_size": 512},
}


def _recipe(**train: Any) -> Any:
    tree = {**TINY, "train": {**TINY["train"], **train}}
    return validate(tree, "tiny")


def test_options_validate() -> None:
    t = validate({}).config.train
    assert (t.compile, t.channels_last, t.data_on_device) == (False, "auto", "auto")
    t = validate({"train": {"compile": True, "channels_last": False, "data_on_device": "auto"}}).config.train
    assert (t.compile, t.channels_last, t.data_on_device) == (True, False, "auto")
    for key, bad in (("channels_last", "sometimes"), ("data_on_device", 3), ("compile", "auto")):
        with pytest.raises(RecipeError, match=rf"\[train\] {key}"):
            validate({"train": {key: bad}})


def test_cpu_resolution_is_a_no_op_unless_forced() -> None:
    cpu = torch.device("cpu")
    speed = Speed(cpu)
    assert speed.data_device(True, 10**12) == cpu and speed.data_device("auto", 1) == cpu
    conv = nn.Sequential(nn.Conv2d(3, 4, 3))
    assert not speed.wants_channels_last(conv)
    Speed(cpu, channels_last=True).prepare(conv)
    assert conv[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert Speed(torch.device("cuda"), "auto").wants_channels_last(conv)
    assert not Speed(torch.device("cuda"), "auto").wants_channels_last(nn.Linear(2, 2))


def _run(tmp_path: Path, **train: Any) -> dict[str, Any]:
    return Engine(_recipe(**train), tmp_path / "run", device="cpu", observers=[]).run()


def test_tiny_cpu_run_with_channels_last_and_data_on_device(tmp_path: Path) -> None:
    summary = _run(tmp_path, channels_last=True, data_on_device=True)
    assert math.isfinite(summary["loss"]) and 0.0 <= summary["acc"] <= 1.0


@pytest.mark.skipif(not compile_supported(), reason="torch.compile is not available here")
def test_tiny_cpu_run_with_compile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """TorchDynamo captures the backbone's graphs; the 'eager' backend skips code generation, which
    takes minutes on 2 CPU cores and is torch's business, not the toolkit's."""
    compiled: list[nn.Module] = []
    original = nn.Module.compile

    def eager_compile(self: nn.Module, *args: Any, **kwargs: Any) -> None:
        compiled.append(self)
        original(self, backend="eager")

    monkeypatch.setattr(nn.Module, "compile", eager_compile)
    torch._dynamo.reset()
    summary = _run(tmp_path, compile=True)
    assert len(compiled) == 1 and compiled[0]._compiled_call_impl is not None
    assert math.isfinite(summary["loss"]) and 0.0 <= summary["acc"] <= 1.0

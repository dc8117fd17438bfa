"""In a batch job's log (stdout/stderr not a terminal) a run prints plain lines as it goes, per stage and per
epoch at most every 30 s, instead of staying silent until the final table."""

from __future__ import annotations

import io
from types import SimpleNamespace

from rich.console import Console

from toolkit.commands.progress import PlainProgress, RichProgress, WarningPrinter, console_observers


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _run() -> SimpleNamespace:
    recipe = SimpleNamespace(experiment=SimpleNamespace(name="baseline", protocol="transductive"), derived={})
    return SimpleNamespace(recipe=recipe, device="cpu", n_train=1797, num_clusters=10, mlflow_run_id="abc",
                           plugins={"pretrain": {"name": "simclr"}})


def test_plain_lines_per_stage_and_throttled_epochs() -> None:
    buf, clock = io.StringIO(), Clock()
    progress = PlainProgress(Console(file=buf, width=200), every=30.0, clock=clock)
    progress.on_run_start(run=_run())
    progress.on_stage_start(stage="pretrain", total=100)
    for epoch in range(1, 101):
        clock.now += 1.0  # 100 epochs of 1 s: first, every 30 s, and the last
        progress.on_epoch_end(stage="pretrain", epoch=epoch, metrics={"loss": 5.0 - epoch / 100}, state=None)
    progress.on_stage_end(stage="pretrain")
    progress.on_stage_end(stage="pretrain")  # the engine and the plugin's loop both end it: one line
    progress.on_warning(message="something odd")
    lines = buf.getvalue().splitlines()
    assert "baseline on cpu | 1797 images, 10 clusters" in lines[0] and "MLflow run abc" in lines[1]
    epochs = [line for line in lines if "pretrain: epoch" in line]
    assert [line.split("epoch ")[1].split("/")[0] for line in epochs] == ["1", "31", "61", "91", "100"]
    assert "loss=4" in epochs[-1] and "(100 s)" in epochs[-1]
    assert lines[-2].endswith("pretrain: done in 100 s") and lines[-1].endswith("warning: something odd")
    assert sum("done in" in line for line in lines) == 1


def test_held_back_last_epoch_is_printed_at_stage_end() -> None:
    buf, clock = io.StringIO(), Clock()
    progress = PlainProgress(Console(file=buf, width=200), clock=clock)
    progress.on_stage_start(stage="head_init", total=None)  # a plugin loop whose length is unknown
    for epoch in range(1, 6):
        clock.now += 1.0
        progress.on_epoch_end(stage="head_init", epoch=epoch, metrics={"loss": 1.0}, state=None)
    progress.on_stage_end(stage="head_init")
    text = buf.getvalue()
    assert "head_init: epoch 5" in text and text.rstrip().endswith("head_init: done in 5 s")


def test_console_observers_choose_by_terminal() -> None:
    log = Console(file=io.StringIO())  # not a terminal
    tty = Console(file=io.StringIO(), force_terminal=True)
    assert isinstance(console_observers(log, True)[0], PlainProgress)
    assert isinstance(console_observers(tty, True)[0], RichProgress)
    assert isinstance(console_observers(log, False)[0], WarningPrinter)

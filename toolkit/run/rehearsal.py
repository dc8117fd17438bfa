"""The event-bus side of a rehearsal ([train] max_steps): stage events reach the run's `StepCap`, which
times each stage (toolkit/api/step_cap.py); `benchmarks/rehearsal.py` reads what it wrote."""

from __future__ import annotations

from typing import Any

from toolkit.api.step_cap import StepCap
from toolkit.run.events import Observer


class CapObserver(Observer):
    """Forwards stage starts, ends and epochs to the cap."""

    def __init__(self, cap: StepCap) -> None:
        self.cap = cap

    def on_stage_start(self, *, stage: str, total: int | None) -> None:
        self.cap.on_stage_start(stage=stage, total=total)

    def on_stage_end(self, *, stage: str) -> None:
        self.cap.on_stage_end(stage=stage)

    def on_epoch_end(self, *, stage: str, epoch: int, metrics: dict[str, float], state: Any) -> None:
        self.cap.on_epoch_end(stage=stage, epoch=epoch)

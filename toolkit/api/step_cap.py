"""`[train] max_steps`: a rehearsal of a recipe at its real data size, every stage cut to a few steps.

A paper recipe at CIFAR size takes hours; whether it fits in memory, has no shape error and has no stage that
never ends can be learnt in minutes by running every stage briefly on data of the real shape. While a cap is
active (the engine activates it for a run with `[train] max_steps = S`):

- every training loop (`RunContext.batches`) yields at most S batches per epoch;
- every epoch loop (the engine's self-labeling, `ctx.epoch_loop` of plugin stages) runs at most
  `MAX_EPOCHS` epochs, the last of them flagged `last` so end-of-stage work runs too;
- every whole-data pass (`RunContext.encode`, `encode_copies`, `chunked`, evaluation) computes its first S
  chunks and fills the other rows by repeating them: tensors have their real shapes and memory, values are
  meaningless. A rehearsal's metrics say nothing about quality.

The cap also measures: per stage, the time of each training step, the full steps per epoch, the declared
epochs, the whole-data passes (projected to their full size) and the peak host memory. `benchmarks/rehearsal.py`
turns these into projected wall times. The same rules hold for every stage, the plugins' own included, because
they all go through these loops.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence, TypeVar

import torch

T = TypeVar("T")

#: Epochs a capped stage runs: two, so per-epoch work is told apart from one-off work at a stage's start.
MAX_EPOCHS = 2


@dataclass
class StageRecord:
    """What a capped run measured of one stage (plugin stages nested in it are their own records)."""

    name: str
    #: Epochs the full recipe declares for the stage (None: no epoch loop, e.g. the engine's head_init).
    epochs: int | None = None
    epochs_run: int = 0
    #: Full-size steps per epoch (from the data size and batch size of the stage's training loop).
    steps_per_epoch: int = 0
    step_seconds: list[float] = field(default_factory=list)
    #: Whole-data passes: measured seconds and the same passes projected to every chunk.
    pass_seconds: float = 0.0
    pass_projected: float = 0.0
    #: Wall seconds inside the stage, nested stages excluded.
    own_seconds: float = 0.0
    #: Wall seconds of the stages nested in this one.
    nested_seconds: float = 0.0
    #: At each epoch's end: (wall clock, step seconds, pass seconds, projected pass seconds, nested seconds) so
    #: far, so the last epoch's own time tells per-epoch work from one-off work at the stage's start.
    marks: list[tuple[float, float, float, float, float]] = field(default_factory=list)
    #: Peak resident host memory while the stage ran (bytes; Linux VmHWM, reset at the stage's start).
    peak_bytes: int = 0
    #: Peak GPU memory allocated by torch while the stage ran (bytes; 0 without CUDA).
    peak_device_bytes: int = 0
    times_run: int = 0


class StepCap:
    """The active cap and its measurements (one per run process)."""

    def __init__(self, max_steps: int) -> None:
        self.max_steps = max_steps
        #: How much longer than measured the current step or chunk would take: an inner loop cut from T to S
        #: iterations (`inner_loop`) inside it sets T/S.
        self.inner_scale = 1.0
        self._in_step = False  # a pass inside a training step (e.g. sampling per step) scales the step instead
        self.stages: dict[str, StageRecord] = {}
        self._stack: list[tuple[StageRecord, float, float]] = []  # (record, started, nested seconds)

    # ------------------------------------------------------------------ stages (event-bus observer methods)
    def on_stage_start(self, *, stage: str, total: int | None) -> None:
        if self._stack and self._stack[-1][0].name == stage:  # a plugin's loop inside the engine's stage of that name
            rec = self._stack[-1][0]
            rec.epochs = total if total is not None else rec.epochs
            self._stack.append((rec, time.perf_counter(), -1.0))  # -1: a merged level, timed by its outer one
            return
        rec = self.stages.setdefault(stage, StageRecord(stage))
        rec.epochs = total if total is not None else rec.epochs
        rec.times_run += 1
        self._note_peak(reset=True)  # what the enclosing stages reached so far, before the marks are reset
        _reset_peak()
        self._stack.append((rec, time.perf_counter(), 0.0))

    def on_stage_end(self, *, stage: str) -> None:
        if not self._stack:
            return
        rec, started, nested = self._stack[-1]
        self._note_peak()
        self._stack.pop()
        if nested < 0:
            return
        spent = time.perf_counter() - started
        rec.own_seconds += spent - nested
        for i in range(len(self._stack) - 1, -1, -1):  # the enclosing real stage does not count it as its own
            outer, o_started, o_nested = self._stack[i]
            if o_nested >= 0:
                self._stack[i] = (outer, o_started, o_nested + spent)
                outer.nested_seconds += spent
                break

    def on_epoch_end(self, *, stage: str, epoch: int, metrics: object = None, state: object = None) -> None:
        if epoch > 0 and self._stack and self._stack[-1][0].name == stage:
            rec = self._stack[-1][0]
            rec.epochs_run += 1
            rec.marks.append((time.perf_counter(), sum(rec.step_seconds), rec.pass_seconds, rec.pass_projected,
                              rec.nested_seconds))

    def _note_peak(self, reset: bool = False) -> None:
        peak, device = _peak(), _device_peak(reset)
        for rec, _, _ in self._stack:
            rec.peak_bytes = max(rec.peak_bytes, peak)
            rec.peak_device_bytes = max(rec.peak_device_bytes, device)

    def _current(self) -> StageRecord:
        if not self._stack:
            return self.stages.setdefault("between_stages", StageRecord("between_stages"))
        return self._stack[-1][0]

    # ------------------------------------------------------------------ loops
    def epochs(self, first: int, last: int) -> int:
        """The last epoch a stage running epochs first..last may reach under the cap."""
        return min(last, first + MAX_EPOCHS - 1)

    def steps(self, batches: Iterator[torch.Tensor], full_steps: int) -> Iterator[torch.Tensor]:
        """At most max_steps of `batches`, each step timed (from handing out its batch to asking for the next)."""
        rec = self._current()
        rec.steps_per_epoch = max(rec.steps_per_epoch, full_steps)
        for taken, index in enumerate(batches):
            if taken >= self.max_steps:
                return
            self.inner_scale, self._in_step = 1.0, True
            started = time.perf_counter()
            try:
                yield index
            finally:
                self._in_step = False
            rec.step_seconds.append((time.perf_counter() - started) * self.inner_scale)
            self.inner_scale = 1.0

    def chunked(self, n: int, chunk: int, fn: Callable[[int, int], Sequence[torch.Tensor]]) -> list[torch.Tensor]:
        """The first max_steps chunks of a whole-data pass, their rows repeated to n (see the module docstring)."""
        total = math.ceil(n / chunk)
        outer_scale, self.inner_scale = self.inner_scale, 1.0
        started = time.perf_counter()
        parts = [list(fn(a, min(a + chunk, n))) for a in range(0, min(n, self.max_steps * chunk), chunk)]
        seconds = time.perf_counter() - started
        scale = self.inner_scale * total / max(len(parts), 1)
        if self._in_step:  # part of the step's time: the step's measurement is scaled up instead
            self.inner_scale = max(outer_scale, scale)
        else:
            rec = self._current()
            rec.pass_seconds += seconds
            rec.pass_projected += seconds * scale
            self.inner_scale = outer_scale
        if not parts:
            return [torch.empty(0) for _ in fn(0, 0)]
        outs = [torch.cat(column) for column in zip(*parts)]
        return [out[torch.arange(n, device=out.device) % len(out)] if len(out) < n else out for out in outs]

    def inner(self, items: Sequence[T]) -> Iterator[T]:
        """The first max_steps of an inner loop's items; the time of the step or chunk around it is scaled up."""
        if len(items) > self.max_steps:
            self.inner_scale = max(self.inner_scale, len(items) / self.max_steps)
        for taken, item in enumerate(items):
            if taken >= self.max_steps:
                return
            yield item

    def write(self, path: Path) -> None:
        import json

        path.write_text(json.dumps({"max_steps": self.max_steps, "max_epochs": MAX_EPOCHS,
                                    "stages": [asdict(r) for r in self.stages.values()]}, indent=1))


_ACTIVE: StepCap | None = None


def active() -> StepCap | None:
    """The cap of the running rehearsal, or None (a normal run)."""
    return _ACTIVE


@contextmanager
def activated(cap: StepCap | None) -> Iterator[StepCap | None]:
    """Make `cap` the process's cap for the block (None: no cap)."""
    global _ACTIVE
    previous, _ACTIVE = _ACTIVE, cap
    try:
        yield cap
    finally:
        _ACTIVE = previous


def inner_loop(items: Sequence[T]) -> Iterator[T]:
    """Iterate an expensive inner loop (a sampler's denoising steps): all of `items` in a normal run; under a
    rehearsal only the first few, and the time measured around the loop is scaled by how many were left out."""
    if _ACTIVE is None:
        yield from items
    else:
        yield from _ACTIVE.inner(items)


def chunked(n: int, chunk: int, fn: Callable[[int, int], Sequence[torch.Tensor]]) -> list[torch.Tensor]:
    """`fn(start, stop)` over rows [0, n) in chunks, each of its outputs concatenated: a whole-data pass.
    Under a rehearsal cap only the first chunks run (see the module docstring)."""
    if _ACTIVE is not None:
        return _ACTIVE.chunked(n, chunk, fn)
    parts = [list(fn(a, min(a + chunk, n))) for a in range(0, n, chunk)]
    if not parts:
        return [torch.empty(0) for _ in fn(0, 0)]
    return [torch.cat(column) for column in zip(*parts)]


def _reset_peak() -> None:
    """Reset the kernel's peak-RSS mark of this process (Linux; elsewhere the peak stays process-wide)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _device_peak(reset: bool = False) -> int:
    """torch's peak CUDA allocation since the last reset (0 without CUDA)."""
    if not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return 0
    peak = int(torch.cuda.max_memory_allocated())
    if reset:
        torch.cuda.reset_peak_memory_stats()
    return peak


def _peak() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024

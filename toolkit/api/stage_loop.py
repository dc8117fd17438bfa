"""The resumable epoch loop of a plugin-owned stage (a pretext task, head training, a generator).

Six plugins used to hand-write the same loop, each with its own slightly different resume, seeding and
divergence handling. Written once here, every such stage keeps the same promises:

- resume: the state is restored from the stage's last resume point and the loop continues after it;
- per-epoch seeding: each epoch gets a generator seeded from (run seed, salt, epoch), so a resumed run
  draws exactly what an uninterrupted one would; on request the global RNG (dropout) is seeded from it
  too, inside a fork, so the stage never disturbs the global RNG of the rest of the run;
- a non-finite reported metric stops the run with one line naming the stage, plugin, epoch and metric;
- every epoch is logged (`log_epoch`: progress bar, MLflow, Ray Tune) and saved as a resume point;
- stage start/end events, with the epoch count, for progress displays.

Usage, inside a plugin::

    state = Checkpointed(backbone=backbone, projection=proj, optimizer=opt)
    for epoch in ctx.epoch_loop("pretrain", o.epochs, state, salt=(MY_SALT,), plugin="mine"):
        for index in ctx.batches(epoch.generator, o.batch_size):
            ...
        epoch.report(loss=mean_loss)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator, Protocol

import torch

from toolkit.api.context import _rng_devices
from toolkit.errors import TrainingError

if TYPE_CHECKING:
    from toolkit.api.context import RunContext


class Resumable(Protocol):
    """Anything whose state can be saved and restored: modules, optimizers, schedulers, `Checkpointed`."""

    def state_dict(self) -> dict[str, Any]:
        """The state to save: tensors and plain values only (resume points are loaded with weights_only)."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""
        ...


class Checkpointed:
    """Named parts of a stage's state saved and restored together.

    A part is either `Resumable` (module, optimizer, scheduler, or a plugin's own object with
    `state_dict`/`load_state_dict`) or a tensor, which is restored in place (resized when needed), so
    plain values such as k-means labels or a best loss can live in a tensor the plugin already holds.
    """

    def __init__(self, **parts: Resumable | torch.Tensor | None) -> None:
        self.parts = {name: part for name, part in parts.items() if part is not None}

    def state_dict(self) -> dict[str, Any]:
        """Every part's state under its name (tensors as CPU copies)."""
        return {name: part.detach().cpu().clone() if isinstance(part, torch.Tensor) else part.state_dict()
                for name, part in self.parts.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore every part; a missing part (a resume point of another plugin version) is one clear error."""
        missing = sorted(set(self.parts) - set(state))
        if missing:
            raise TrainingError(f"the resume point lacks {', '.join(missing)}: it was written by another version "
                                "of the plugin; start the run afresh in a new output folder")
        for name, part in self.parts.items():
            if isinstance(part, torch.Tensor):
                saved = torch.as_tensor(state[name])
                with torch.no_grad():
                    part.resize_(saved.shape).copy_(saved.to(part.device, part.dtype))
            else:
                part.load_state_dict(state[name])


@dataclass
class StageEpoch:
    """One epoch of a plugin-owned stage: its number (1-based), seeded generator, and reported metrics."""

    number: int
    #: Seeded from (run seed, salt, number): use it for every random draw of the epoch.
    generator: torch.Generator
    #: Whether this is the stage's last epoch.
    last: bool
    salt: tuple[int, ...] = ()
    ctx: "RunContext | None" = field(default=None, repr=False)
    metrics: dict[str, float] = field(default_factory=dict)

    def report(self, metrics: dict[str, float] | None = None, **more: float) -> None:
        """The epoch's figures (mean losses, ...): checked for finiteness, logged, kept for the summary."""
        self.metrics.update({k: float(v) for k, v in {**(metrics or {}), **more}.items()})

    def generator_for(self, *salt: int) -> torch.Generator:
        """A further generator for a sub-task of this epoch (e.g. one per head), seeded like `generator`."""
        assert self.ctx is not None
        return self.ctx.generator(*self.salt, self.number, *salt)


class EpochLoop:
    """Iterate to run the stage's remaining epochs (see the module docstring)."""

    def __init__(self, ctx: "RunContext", stage: str, epochs: int, state: Resumable, salt: tuple[int, ...],
                 plugin: str, seed_global: bool = False) -> None:
        self.ctx, self.stage, self.epochs, self.state = ctx, stage, epochs, state
        self.salt, self.plugin, self.seed_global = tuple(salt), plugin, seed_global
        #: The epoch a resumed run had finished (None: a fresh stage). Set as soon as the loop is made,
        #: so a plugin can skip one-off work (k-means) that the resume point already holds.
        self.resumed_from: int | None = None
        #: The last epoch's reported metrics (empty until an epoch ran).
        self.metrics: dict[str, float] = {}
        point = ctx.resume_point(stage)
        if point is not None:
            state.load_state_dict({k: v for k, v in point.items() if k != "epoch"})
            self.resumed_from = int(point["epoch"])
            ctx.warn(f"{stage} ({plugin}): resuming after epoch {self.resumed_from}")

    def checkpoint(self, epoch: int = 0) -> None:
        """Save the state now (e.g. after expensive one-off work before epoch 1), whatever the time."""
        self.ctx.save_point(self.stage, epoch, self.state.state_dict(), final=True)

    def __iter__(self) -> Iterator[StageEpoch]:
        from toolkit.api import step_cap

        first = (self.resumed_from or 0) + 1
        cap = step_cap.active()
        end = self.epochs if cap is None else cap.epochs(first, self.epochs)  # a rehearsal: a few epochs
        self.ctx.events.emit("on_stage_start", stage=self.stage, total=self.epochs)
        for number in range(first, end + 1):
            gen = self.ctx.generator(*self.salt, number)
            epoch = StageEpoch(number, gen, number == end, self.salt, self.ctx)
            if self.seed_global:
                with torch.random.fork_rng(devices=_rng_devices(self.ctx.device)):
                    torch.manual_seed(int(torch.randint(2**62, (1,), generator=gen)))
                    yield epoch
            else:
                yield epoch
            self._close(epoch)
        self.ctx.events.emit("on_stage_end", stage=self.stage)

    def _close(self, epoch: StageEpoch) -> None:
        bad = [k for k, v in epoch.metrics.items() if not math.isfinite(v)]
        if bad:
            raise TrainingError(f"stage {self.stage} ({self.plugin}), epoch {epoch.number}: non-finite "
                                f"{', '.join(bad)} (try a lower learning rate or a gradient clip)")
        self.metrics = dict(epoch.metrics)
        self.ctx.log_epoch(self.stage, epoch.number, epoch.metrics)
        self.ctx.save_point(self.stage, epoch.number, self.state.state_dict(), final=epoch.last)


"""What a run shows on the console, driven by lifecycle events: rich progress bars on a terminal, plain
timestamped lines in a batch job's log, or only warnings (--no-progress)."""

from __future__ import annotations

import time
from typing import Any, Callable

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from toolkit.run.events import Observer

_SHOWN = ("loss", "acc", "selected_fraction")


class RichProgress(Observer):
    """One bar per stage; the bar's text shows the latest loss and metrics."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.progress = Progress(TextColumn("[bold]{task.description:<10}"), BarColumn(bar_width=20), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("{task.fields[info]}"),
                                 console=self.console, transient=False)
        self.tasks: dict[str, Any] = {}
        self.started = False

    def _ensure(self) -> None:
        if not self.started:
            self.progress.start()
            self.started = True

    def on_run_start(self, *, run: Any) -> None:
        self._ensure()
        self.console.print(f"[bold]{escape(run.recipe.experiment.name)}[/]{escape(header(run))}")
        if run.mlflow_run_id:
            self.console.print(f"MLflow run {run.mlflow_run_id}")
        for line in derived_lines(run.recipe):
            self.console.print(escape(line), highlight=False)

    def on_stage_start(self, *, stage: str, total: int | None) -> None:
        self._ensure()
        if stage not in self.tasks:
            self.tasks[stage] = self.progress.add_task(stage, total=total, info="")
        elif total is not None:  # a plugin's epoch loop knows the length the engine did not
            self.progress.update(self.tasks[stage], total=total)

    def on_epoch_end(self, *, stage: str, epoch: int, metrics: dict[str, float], state: Any) -> None:
        if stage not in self.tasks:
            self.on_stage_start(stage=stage, total=None)
        info = "  ".join(f"{k}={metrics[k]:.4g}" for k in _SHOWN if isinstance(metrics.get(k), (int, float)))
        if epoch > 0:
            self.progress.update(self.tasks[stage], completed=epoch, info=info)
        else:
            self.progress.update(self.tasks[stage], info=info)

    def on_stage_end(self, *, stage: str) -> None:
        if stage in self.tasks:
            t = next(t for t in self.progress.tasks if t.id == self.tasks[stage])
            if t.total is None:
                self.progress.update(self.tasks[stage], total=t.completed or 1, completed=t.completed or 1)

    def on_warning(self, *, message: str) -> None:
        self.console.print(f"[yellow]{escape(message)}[/]")

    def _stop(self) -> None:
        if self.started:
            self.progress.stop()
            self.started = False

    def on_run_end(self, *, summary: dict[str, Any], output_dir: Any) -> None:
        self._stop()

    def on_exception(self, *, error: BaseException) -> None:
        self._stop()


class WarningPrinter(Observer):
    """Without progress bars (--no-progress, logs of batch jobs) a run's warnings still reach stderr, one line each."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)

    def on_run_start(self, *, run: Any) -> None:
        for line in derived_lines(run.recipe):
            self.console.print(escape(line), soft_wrap=True, highlight=False)

    def on_warning(self, *, message: str) -> None:
        self.console.print(f"warning: {escape(message)}", soft_wrap=True, highlight=False)


class PlainProgress(Observer):
    """For a log file rather than a terminal (batch jobs, CI, a scheduler's log): rich draws nothing there
    until the run ends, so print one timestamped line per stage start and end, and per epoch at most every
    `every` seconds per stage (its first and last epochs always), with the key figures."""

    def __init__(self, console: Console | None = None, every: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.console = console or Console(stderr=True)
        self.every, self.clock = every, clock
        self.totals: dict[str, int | None] = {}
        self.started: dict[str, float] = {}
        self.last_line: dict[str, float] = {}
        self.last_epoch: dict[str, tuple[int, str]] = {}

    def _say(self, text: str) -> None:
        self.console.print(f"{time.strftime('%H:%M:%S')} {text}", soft_wrap=True, highlight=False, markup=False)

    def on_run_start(self, *, run: Any) -> None:
        self._say(f"{run.recipe.experiment.name}{header(run)}")
        if run.mlflow_run_id:
            self._say(f"MLflow run {run.mlflow_run_id}")
        for line in derived_lines(run.recipe):
            self._say(line)

    def on_stage_start(self, *, stage: str, total: int | None) -> None:
        if stage not in self.started:
            self.started[stage] = self.last_line[stage] = self.clock()
            self._say(f"{stage}: started" + (f", {total} epochs" if total else ""))
        if total is not None:
            self.totals[stage] = total

    def on_epoch_end(self, *, stage: str, epoch: int, metrics: dict[str, float], state: Any) -> None:
        if stage not in self.started:
            self.on_stage_start(stage=stage, total=None)
        total = self.totals.get(stage)
        info = "  ".join(f"{k}={metrics[k]:.4g}" for k in _SHOWN if isinstance(metrics.get(k), (int, float)))
        of = f"/{total}" if total else ""
        line = f"{stage}: epoch {epoch}{of}  {info}".rstrip()
        self.last_epoch[stage] = (epoch, line)
        now = self.clock()
        if epoch <= 1 or (total is not None and epoch >= total) or now - self.last_line[stage] >= self.every:
            self._say(f"{line}  ({now - self.started[stage]:.0f} s)")
            self.last_line[stage] = now
            self.last_epoch[stage] = (epoch, "")

    def on_stage_end(self, *, stage: str) -> None:
        if stage not in self.started:
            return  # the engine and a plugin's own loop may both end a stage: say it once
        elapsed = self.clock() - self.started.pop(stage)
        epoch, unsaid = self.last_epoch.pop(stage, (0, ""))
        if unsaid:  # the stage's last figures, when the throttle held them back
            self._say(f"{unsaid}  ({elapsed:.0f} s)")
        self._say(f"{stage}: done in {elapsed:.0f} s")

    def on_warning(self, *, message: str) -> None:
        self._say(f"warning: {message}")


def header(run: Any) -> str:
    """The rest of a run's first line: device, data, clusters, protocol and each slot's plugin."""
    plugins = ", ".join(f"{s}={p['name']}" for s, p in run.plugins.items())
    clusters = run.num_clusters or "auto"
    return (f" on {run.device} | {run.n_train} images, {clusters} clusters, protocol "
            f"{run.recipe.experiment.protocol} | {plugins}")


def derived_lines(recipe: Any) -> list[str]:
    """One line per "auto" value the run derived from its data: key, value and the rule."""
    return [f"auto: {key} = {value}  ({why})" for key, (value, why) in sorted(getattr(recipe, "derived", {}).items())]


def console_observers(console: Console, progress: bool) -> list[Observer]:
    """What a command shows of a run on the console: progress bars on a terminal, plain lines in a log file
    (both with warnings), or warnings alone (--no-progress)."""
    if not progress:
        return [WarningPrinter(console)]
    return [RichProgress(console) if console.is_terminal else PlainProgress(console)]

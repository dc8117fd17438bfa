"""Rich progress bars per stage, driven by lifecycle events."""

from __future__ import annotations

from typing import Any

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
        plugins = ", ".join(f"{s}={p['name']}" for s, p in run.plugins.items())
        self.console.print(f"[bold]{run.recipe.experiment.name}[/] on {run.device} | {run.n_train} images, "
                           f"{run.num_clusters} clusters, protocol {run.recipe.experiment.protocol} | {plugins}")
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


def derived_lines(recipe: Any) -> list[str]:
    """One line per "auto" value the run derived from its data: key, value and the rule."""
    return [f"auto: {key} = {value}  ({why})" for key, (value, why) in sorted(getattr(recipe, "derived", {}).items())]


def console_observers(console: Console, progress: bool) -> list[Observer]:
    """What a command shows of a run on the console: progress bars (with warnings), or warnings alone."""
    return [RichProgress(console) if progress else WarningPrinter(console)]

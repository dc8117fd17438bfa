"""Lifecycle events: the loop emits, observers (progress, MLflow, checkpoints, Ray Tune) listen.

The loop never knows who listens. An observer overrides only the methods it needs.
"""

from __future__ import annotations

from typing import Any

from toolkit.run.interrupt import deferred


class Observer:
    """No-op base: override the events you care about. Keyword arguments only."""

    def on_run_start(self, *, run: Any) -> dict[str, Any] | None:
        """The run is starting. Return what this observer created for it (e.g. {"mlflow_run_id": ...});
        the bus records it on the run's info, where later observers, the run state and the summary read it."""
    def on_stage_start(self, *, stage: str, total: int | None) -> None: ...
    def on_stage_end(self, *, stage: str) -> None: ...
    def on_epoch_end(self, *, stage: str, epoch: int, metrics: dict[str, float], state: Any) -> None: ...
    def on_warning(self, *, message: str) -> None: ...
    def on_pseudo_labels(self, *, stage: str, epoch: int, name: str, index: Any, labels: Any) -> None: ...
    def on_artifact(self, *, path: Any, artifact_path: str) -> None: ...
    def on_run_end(self, *, summary: dict[str, Any], output_dir: Any) -> None: ...
    def on_exception(self, *, error: BaseException) -> None: ...


class EventBus:
    """Dispatches each event to every observer, in registration order."""

    def __init__(self, observers: list[Observer] | None = None) -> None:
        self.observers: list[Observer] = list(observers or [])

    def add(self, observer: Observer) -> None:
        self.observers.append(observer)

    def emit(self, event: str, **kwargs: Any) -> None:
        with deferred():  # SIGTERM / Ctrl-C stop the run after the observers, not inside a write of theirs
            for obs in self.observers:
                getattr(obs, event)(**kwargs)

    def start_run(self, run: Any) -> None:
        """`on_run_start` for every observer, in order; each one's returned fields are set on `run` before
        the next observer is called (so a reporter registered after the tracker sees the run id)."""
        with deferred(hold=True):  # an interruption waits for the next event, where the run records it
            for obs in self.observers:
                created = obs.on_run_start(run=run)
                for key, value in (created or {}).items():
                    if not hasattr(run, key):
                        raise AttributeError(f"{type(obs).__name__}.on_run_start returned unknown run field '{key}'")
                    setattr(run, key, value)

    def emit_exception(self, error: BaseException) -> None:
        """Tell every observer about a failure; one failing observer must not hide the others."""
        for obs in self.observers:
            try:
                obs.on_exception(error=error)
            except Exception:  # noqa: BLE001 - best effort while already failing
                pass

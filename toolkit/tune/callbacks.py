"""Driver-side Ray Tune callback: trials' MLflow child runs are logged from their journals as results arrive."""

from __future__ import annotations

import time
from typing import Any

from ray.tune import Callback
from rich.console import Console

from toolkit.tune.parallel import release_workers


class TrialTracking(Callback):
    """Ray Tune callback (driver side): logs journaling trials into their MLflow child runs as results
    arrive (at most once a second between results), and closes a child run that Ray stopped (ASHA) or
    lost (worker died) as KILLED / FAILED with the reason, where it would otherwise stay RUNNING."""

    def __init__(self, children: Any, console: bool = True) -> None:
        self.children, self.console = children, console
        self._last_sync = 0.0

    def _run_id(self, trial: Any) -> str | None:
        return self.children.sync(trial.trial_id) or (trial.last_result or {}).get("mlflow_run_id") or None

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        if time.monotonic() - self._last_sync < 1.0:
            return
        self._last_sync = time.monotonic()
        for trial in trials:
            if trial.status == "RUNNING":
                self.children.sync(trial.trial_id)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self.children.sync(trial.trial_id)
        if self.console:
            Console(stderr=True).print(f"[dim]trial {trial.trial_id} epoch {result.get('epoch')}[/]", highlight=False)

    def _close(self, trial: Any, status: str, reason: str) -> None:
        release_workers(self.children.trials_dir / trial.trial_id)
        run_id = self._run_id(trial)
        if run_id:
            self.children.close_if_running(run_id, status, reason)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._close(trial, "KILLED", f"stopped early by the scheduler after epoch {(trial.last_result or {}).get('epoch')}")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._close(trial, "FAILED", "the trial's worker failed")

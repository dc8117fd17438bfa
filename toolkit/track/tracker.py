"""MLflow tracking as an observer: params, tags, per-epoch metrics, artifacts, run status.

The store is MLFLOW_TRACKING_URI when set, else a local SQLite file under ./mlruns (no server); an
unreachable server fails fast, or with `--tracking-fallback local` the run logs to its own folder.
A crashed run is closed as FAILED with its error, so nothing is left dangling as RUNNING.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from toolkit.errors import UserError
from toolkit.run.events import Observer
from toolkit.run.folder import RunFolder
from toolkit.track.records import (create_run, error_status, fail_run, finish_run, finite, log_epoch, log_tags,
                                   params_of, plugin_tags, run_dataset, run_name, start_tags)
from toolkit.track.steps import LoggedSteps
from toolkit.track.store import experiment_id, open_client, tracking_uri


class MlflowTracker(Observer):
    """Logs one run. Metrics of plugin stages get the stage as prefix (pretrain_loss, ...)."""

    def __init__(self, uri: str | None = None, artifact_root: str | None = None, experiment: str | None = None,
                 parent_run_id: str | None = None, fallback: str = "fail",
                 notify: Callable[[str], None] | None = None) -> None:
        self._uri, self.artifact_root, self.experiment_name = uri, artifact_root, experiment
        self.parent_run_id = parent_run_id
        self.fallback, self.notify = fallback, notify  # see toolkit/track/fallback.py
        self.client: Any = None  # connected at run start, after the recipe and data were accepted
        self.run_id: str | None = None
        self.logged: LoggedSteps | None = None
        self.system: Any = None  # MLflow's system metrics sampler, while the run runs

    def _connect(self, output_dir: Path, resuming: bool) -> None:
        from toolkit.track.fallback import resolve_store

        if self._uri is None:
            self._uri, self.artifact_root = tracking_uri()
        self._uri, self.artifact_root = resolve_store(self._uri, self.artifact_root, self.fallback, output_dir,
                                                      resuming=resuming, notify=self.notify)
        self.uri = self._uri
        self.client = open_client(self.uri)

    def on_run_start(self, *, run: Any) -> dict[str, str]:
        """Opens (or, on --resume, reopens) the MLflow run; returns its id for the run's state and summary."""
        self.folder = RunFolder(run.output_dir)
        self._connect(self.folder.root, bool(run.resume_run_id))
        recipe = run.recipe
        exp_id = experiment_id(self.client, self.experiment_name or recipe.experiment.name, self.artifact_root, self.uri,
                               recipe.experiment.description)
        if run.resume_run_id:
            self._reopen(run.resume_run_id)
        else:
            tags = start_tags(run)
            if self.parent_run_id:
                tags["mlflow.parentRunId"] = self.parent_run_id
            self.run_id = create_run(self.client, exp_id, run_name(run), tags, params_of(run), run_dataset(run))
        log_tags(self.client, self.run_id, plugin_tags(run))
        self.system = start_system_metrics(self.run_id, self.uri, resuming=bool(run.resume_run_id))
        self.logged = LoggedSteps(self.folder.logged_steps, fresh=not run.resume_run_id)
        self._run_tags = run.tags  # the engine adds tags during the run; they are logged at its end
        return {"mlflow_run_id": self.run_id}

    def _reopen(self, run_id: str) -> None:
        """Continue the interrupted run's MLflow run; one line when this store does not hold it."""
        try:
            self.client.update_run(run_id, status="RUNNING")
        except Exception as exc:  # noqa: BLE001 - e.g. a run that fell back to its folder's store
            local = self.folder.local_store
            hint = f"; it was logged to {local}: resume with --tracking-fallback local" if local.is_file() else ""
            raise UserError(f"--resume: MLflow run {run_id} is not in {self.uri} "
                            f"({str(exc).splitlines()[0][:200]}){hint}") from None
        self.run_id = run_id

    def on_epoch_end(self, *, stage: str, epoch: int, metrics: dict[str, float], state: Any) -> None:
        if self.run_id is None:
            return
        log_epoch(self.client, self.run_id, stage, epoch, finite(metrics), int(time.time() * 1000), self.logged)

    def on_artifact(self, *, path: Any, artifact_path: str) -> None:
        """A file a plugin wrote during the run (e.g. generated samples each round)."""
        if self.run_id is None or not Path(path).is_file():
            return
        self.client.log_artifact(self.run_id, str(path), artifact_path=artifact_path or None)

    def _stop_system_metrics(self) -> None:
        if self.system is not None:
            self.system.finish()
            self.system = None

    def on_run_end(self, *, summary: dict[str, Any], output_dir: Any) -> None:
        self._stop_system_metrics()
        if self.run_id is None:
            return
        finish_run(self.client, self.run_id, getattr(self, "_run_tags", {}), Path(output_dir))

    def on_exception(self, *, error: BaseException) -> None:
        self._stop_system_metrics()
        if self.run_id is None:
            return
        fail_run(self.client, self.run_id, error_status(error), f"{type(error).__name__}: {error}", self.folder.root)


#: Seconds between samples of CPU, memory, disk, network (and GPU) use; MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL
#: overrides it.
SYSTEM_METRICS_INTERVAL = 10


def start_system_metrics(run_id: str, uri: str, resuming: bool) -> Any:
    """MLflow's system metrics (`system/cpu_utilization_percentage`, ...) sampled into the run by a background
    thread; None where psutil is missing or TOOLKIT_SYSTEM_METRICS=0."""
    import os

    if os.environ.get("TOOLKIT_SYSTEM_METRICS", "1") == "0":
        return None
    try:
        import psutil  # noqa: F401 - the sampler's dependency
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
    except ImportError:
        return None
    monitor = SystemMetricsMonitor(run_id, sampling_interval=SYSTEM_METRICS_INTERVAL, resume_logging=resuming,
                                   tracking_uri=uri)
    monitor.start()
    return monitor

"""MLflow tracking as an observer: params, tags, per-epoch metrics, artifacts, run status.

The store is MLFLOW_TRACKING_URI when set, else a local SQLite file under ./mlruns (no server); an
unreachable server fails fast, or with `--tracking-fallback local` the run logs to its own folder.
A crashed run is closed as FAILED with its error, so nothing is left dangling as RUNNING.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from toolkit.errors import UserError
from toolkit.events import Observer

_PARAM_CHUNK, _TAG_CHUNK, _METRIC_CHUNK = 100, 100, 1000


def default_store(root: str | Path | None = None) -> tuple[str, str]:
    """(tracking URI, artifact root) for the local store under `root` (default: ./mlruns)."""
    base = Path(root or "mlruns").resolve()
    base.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{base / 'mlflow.db'}", (base / "artifacts").as_uri()


def tracking_uri() -> tuple[str, str | None]:
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env, None
    return default_store()


@contextlib.contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Serialise first use of a local SQLite store across processes: two runs starting at once on a
    fresh store would otherwise both create its tables and one would fail."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    lock_path = Path(uri[len("sqlite:///"):]).with_suffix(".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def unreachable_reason(uri: str, timeout: float = 5.0) -> str | None:
    """Why the HTTP tracking server at `uri` does not answer; None when it answers or `uri` is no server."""
    if not uri.startswith(("http://", "https://")):
        return None
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout):
            return None
    except urllib.error.HTTPError:
        return None  # it answered (a proxy or an older server without /health): reachable
    except (OSError, ValueError) as exc:
        return str(exc)


def probe_server(uri: str, timeout: float = 5.0) -> None:
    """Fail fast (one line) when an HTTP tracking server does not answer, before any training starts;
    MLflow's own client would retry with back-off for minutes."""
    reason = unreachable_reason(uri, timeout)
    if reason is not None:
        raise UserError(f"MLflow tracking server {uri} is unreachable ({reason}); start it, fix MLFLOW_TRACKING_URI, "
                        "unset it to log to the local store ./mlruns, or pass --tracking-fallback local to log "
                        "this run inside its output folder")


class MlflowTracker(Observer):
    """Logs one run. Metrics of plugin stages get the stage as prefix (pretrain_loss, ...)."""

    def __init__(self, uri: str | None = None, artifact_root: str | None = None, experiment: str | None = None,
                 parent_run_id: str | None = None, fallback: str = "fail",
                 notify: Callable[[str], None] | None = None) -> None:
        self._uri, self.artifact_root, self.experiment_name = uri, artifact_root, experiment
        self.parent_run_id = parent_run_id
        self.fallback, self.notify = fallback, notify  # see toolkit/tracking_fallback.py
        self.client: Any = None  # connected at run start, after the recipe and data were accepted
        self.run_id: str | None = None

    def _connect(self, output_dir: Path, resuming: bool) -> None:
        import logging

        from mlflow.tracking import MlflowClient

        from toolkit.tracking_fallback import resolve_store

        for name in ("mlflow", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)
        if self._uri is None:
            self._uri, self.artifact_root = tracking_uri()
        self._uri, self.artifact_root = resolve_store(self._uri, self.artifact_root, self.fallback, output_dir,
                                                      resuming=resuming, notify=self.notify)
        self.uri = self._uri
        try:
            with store_lock(self.uri):
                self.client = MlflowClient(tracking_uri=self.uri)
                self.client.search_experiments(max_results=1)  # creates / migrates the schema under the lock
        except Exception as exc:  # noqa: BLE001
            raise UserError(f"MLflow tracking store {self.uri} is unusable: {str(exc).splitlines()[0][:200]}") from None

    def _experiment_id(self, name: str) -> str:
        try:
            exp = self.client.get_experiment_by_name(name)
            if exp is not None:
                return exp.experiment_id
            return self.client.create_experiment(name, artifact_location=self.artifact_root)
        except Exception as exc:  # noqa: BLE001 - any store failure means we cannot track
            if "already exists" in str(exc):  # created by a concurrent run meanwhile
                return self.client.get_experiment_by_name(name).experiment_id
            raise UserError(f"MLflow tracking store {self.uri} is unreachable: {str(exc).splitlines()[0][:200]}") from None

    def on_run_start(self, *, run: Any) -> None:
        from mlflow.entities import Param, RunTag

        self._connect(Path(run.output_dir), bool(run.resume_run_id))
        recipe = run.recipe
        exp_id = self._experiment_id(self.experiment_name or recipe.experiment.name)
        if run.resume_run_id:
            self._reopen(run.resume_run_id, Path(run.output_dir))
        else:
            tags = {"protocol": recipe.experiment.protocol, "oracle": str(recipe.experiment.oracle).lower(),
                    "dataset": recipe.model.data.dataset, "device": str(run.device), "recipe_file": recipe.source}
            if self.parent_run_id:
                tags["mlflow.parentRunId"] = self.parent_run_id
            created = self.client.create_run(exp_id, run_name=f"{recipe.experiment.name}-s{recipe.experiment.seed}",
                                             tags=tags)
            self.run_id = created.info.run_id
            params = [Param(k, v[:6000]) for k, v in recipe.flat_params().items()]
            for i in range(0, len(params), _PARAM_CHUNK):
                self.client.log_batch(self.run_id, params=params[i:i + _PARAM_CHUNK])
        tags = [RunTag(f"plugin.{slot}", p["name"]) for slot, p in run.plugins.items()]
        tags += [RunTag(f"plugin.{slot}.distribution", f"{p['distribution']} {p['version']}") for slot, p in run.plugins.items()]
        tags += [RunTag("output_dir", str(Path(run.output_dir).resolve()))]
        for i in range(0, len(tags), _TAG_CHUNK):
            self.client.log_batch(self.run_id, tags=tags[i:i + _TAG_CHUNK])
        run.mlflow_run_id = self.run_id
        self._run_tags = run.tags

    def _reopen(self, run_id: str, output_dir: Path) -> None:
        """Continue the interrupted run's MLflow run; one line when this store does not hold it."""
        from toolkit.tracking_fallback import LOCAL_DB

        try:
            self.client.update_run(run_id, status="RUNNING")
        except Exception as exc:  # noqa: BLE001 - e.g. a run that fell back to its folder's store
            hint = (f"; it was logged to {output_dir / LOCAL_DB}: resume with --tracking-fallback local"
                    if (output_dir / LOCAL_DB).is_file() else "")
            raise UserError(f"--resume: MLflow run {run_id} is not in {self.uri} "
                            f"({str(exc).splitlines()[0][:200]}){hint}") from None
        self.run_id = run_id

    def on_epoch_end(self, *, stage: str, epoch: int, metrics: dict[str, float], state: Any) -> None:
        from mlflow.entities import Metric

        if self.run_id is None:
            return
        now = int(time.time() * 1000)
        prefix = "" if stage == "self_label" else f"{stage}_"
        items = [Metric(f"{prefix}{k}", float(v), now, epoch) for k, v in metrics.items()
                 if isinstance(v, (int, float)) and math.isfinite(float(v))]
        for i in range(0, len(items), _METRIC_CHUNK):
            self.client.log_batch(self.run_id, metrics=items[i:i + _METRIC_CHUNK])

    def on_artifact(self, *, path: Any, artifact_path: str) -> None:
        """A file a plugin wrote during the run (e.g. generated samples each round)."""
        if self.run_id is None or not Path(path).is_file():
            return
        self.client.log_artifact(self.run_id, str(path), artifact_path=artifact_path or None)

    def on_run_end(self, *, summary: dict[str, Any], output_dir: Any) -> None:
        from mlflow.entities import RunTag

        if self.run_id is None:
            return
        tags = [RunTag(k, str(v)) for k, v in getattr(self, "_run_tags", {}).items()]
        if tags:
            self.client.log_batch(self.run_id, tags=tags)
        out = Path(output_dir)
        for name in ("recipe.toml", "summary.json", "reliability.png", "reliability_clu.png", "confusion.png",
                     "predictions.npy"):
            if (out / name).is_file():
                self.client.log_artifact(self.run_id, str(out / name))
        if (out / "checkpoints" / "final.pt").is_file():
            self.client.log_artifact(self.run_id, str(out / "checkpoints" / "final.pt"), artifact_path="checkpoints")
        self.client.set_terminated(self.run_id, status="FINISHED")

    def on_exception(self, *, error: BaseException) -> None:
        if self.run_id is None:
            return
        from mlflow.entities import RunTag

        status = "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"
        self.client.log_batch(self.run_id, tags=[RunTag("error", f"{type(error).__name__}: {error}"[:5000])])
        self.client.set_terminated(self.run_id, status=status)

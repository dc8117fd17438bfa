"""MLflow tracking as an observer: params, tags, per-epoch metrics, artifacts, run status.

The store is MLFLOW_TRACKING_URI when set, else a local SQLite file under ./mlruns (no server); an
unreachable server fails fast, or with `--tracking-fallback local` the run logs to its own folder.
A crashed run is closed as FAILED with its error, so nothing is left dangling as RUNNING.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

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
        self.logged: LoggedSteps | None = None

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

    def on_run_start(self, *, run: Any) -> None:
        self._connect(Path(run.output_dir), bool(run.resume_run_id))
        recipe = run.recipe
        exp_id = experiment_id(self.client, self.experiment_name or recipe.experiment.name, self.artifact_root, self.uri)
        if run.resume_run_id:
            self._reopen(run.resume_run_id, Path(run.output_dir))
        else:
            tags = start_tags(run)
            if self.parent_run_id:
                tags["mlflow.parentRunId"] = self.parent_run_id
            self.run_id = create_run(self.client, exp_id, run_name(run), tags, recipe.flat_params())
        log_tags(self.client, self.run_id, plugin_tags(run))
        self.logged = LoggedSteps(Path(run.output_dir) / LOGGED_STEPS, fresh=not run.resume_run_id)
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
        if self.run_id is None:
            return
        log_epoch(self.client, self.run_id, stage, epoch, finite(metrics), int(time.time() * 1000), self.logged)

    def on_artifact(self, *, path: Any, artifact_path: str) -> None:
        """A file a plugin wrote during the run (e.g. generated samples each round)."""
        if self.run_id is None or not Path(path).is_file():
            return
        self.client.log_artifact(self.run_id, str(path), artifact_path=artifact_path or None)

    def on_run_end(self, *, summary: dict[str, Any], output_dir: Any) -> None:
        if self.run_id is None:
            return
        finish_run(self.client, self.run_id, getattr(self, "_run_tags", {}), Path(output_dir))

    def on_exception(self, *, error: BaseException) -> None:
        if self.run_id is None:
            return
        fail_run(self.client, self.run_id, error_status(error), f"{type(error).__name__}: {error}")


# ----------------------------------------------------------------------------------------------------------
# What a run logs, as functions of plain values: the in-process tracker above and the Ray Tune driver (which
# logs trials from their journals, toolkit/tune_tracking.py) write identical runs through them.
RUN_FILES = ("recipe.toml", "summary.json", "reliability.png", "reliability_clu.png", "confusion.png", "predictions.npy")


def run_name(run: Any) -> str:
    return f"{run.recipe.experiment.name}-s{run.recipe.experiment.seed}"


def start_tags(run: Any) -> dict[str, str]:
    recipe = run.recipe
    return {"protocol": recipe.experiment.protocol, "oracle": str(recipe.experiment.oracle).lower(),
            "dataset": recipe.model.data.dataset, "device": str(run.device), "recipe_file": recipe.source}


def plugin_tags(run: Any) -> dict[str, str]:
    tags = {f"plugin.{slot}": p["name"] for slot, p in run.plugins.items()}
    tags.update({f"plugin.{slot}.distribution": f"{p['distribution']} {p['version']}" for slot, p in run.plugins.items()})
    tags["output_dir"] = str(Path(run.output_dir).resolve())
    return tags


def finite(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(float(v))}


def error_status(error: BaseException) -> str:
    return "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"


def experiment_id(client: Any, name: str, artifact_root: str | None, uri: str) -> str:
    try:
        exp = client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        return client.create_experiment(name, artifact_location=artifact_root)
    except Exception as exc:  # noqa: BLE001 - any store failure means we cannot track
        if "already exists" in str(exc):  # created by a concurrent run meanwhile
            return client.get_experiment_by_name(name).experiment_id
        raise UserError(f"MLflow tracking store {uri} is unreachable: {str(exc).splitlines()[0][:200]}") from None


def create_run(client: Any, exp_id: str, name: str, tags: dict[str, str], params: dict[str, str]) -> str:
    from mlflow.entities import Param

    run_id = client.create_run(exp_id, run_name=name, tags=tags).info.run_id
    items = [Param(k, str(v)[:6000]) for k, v in params.items()]
    for i in range(0, len(items), _PARAM_CHUNK):
        client.log_batch(run_id, params=items[i:i + _PARAM_CHUNK])
    return run_id


def log_tags(client: Any, run_id: str, tags: dict[str, str]) -> None:
    from mlflow.entities import RunTag

    items = [RunTag(k, str(v)[:5000]) for k, v in tags.items()]
    for i in range(0, len(items), _TAG_CHUNK):
        client.log_batch(run_id, tags=items[i:i + _TAG_CHUNK])


class LoggedSteps:
    """The highest step logged per metric of one MLflow run, kept in a JSON file in the run's folder.

    A resumed run repeats the epochs after its last checkpoint or stage resume point (for example epoch 0,
    the head right after head-init, which has no checkpoint of its own) and emits them again; with these
    marks each (metric, step) reaches MLflow once. Marks are per metric, not per stage, because a stage may
    report different metrics for the same epoch (SPICE's selection logs into self_label epochs).
    """

    def __init__(self, path: Path, fresh: bool) -> None:
        self.path = path
        self.marks: dict[str, int] = {}
        if fresh:
            path.unlink(missing_ok=True)
        elif path.is_file():
            self.marks = {k: int(v) for k, v in json.loads(path.read_text()).items()}

    def new(self, step: int, metrics: dict[str, float]) -> dict[str, float]:
        """The metrics not yet logged at `step`."""
        return {k: v for k, v in metrics.items() if step > self.marks.get(k, -1)}

    def advance(self, step: int, keys: Iterable[str]) -> None:
        self.marks.update({k: step for k in keys})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.marks))
        os.replace(tmp, self.path)


#: Where a run folder keeps its LoggedSteps.
LOGGED_STEPS = "mlflow_steps.json"


def log_epoch(client: Any, run_id: str, stage: str, epoch: int, metrics: dict[str, float], when_ms: int,
              logged: LoggedSteps | None = None) -> None:
    """Metrics of plugin stages get the stage as prefix (pretrain_loss, ...); step = epoch. With `logged`,
    metrics already logged at this step (a resumed run repeating an epoch) are skipped."""
    from mlflow.entities import Metric

    prefix = "" if stage == "self_label" else f"{stage}_"
    named = {f"{prefix}{k}": v for k, v in metrics.items()}
    if logged is not None:
        named = logged.new(epoch, named)
    items = [Metric(k, v, when_ms, epoch) for k, v in named.items()]
    for i in range(0, len(items), _METRIC_CHUNK):
        client.log_batch(run_id, metrics=items[i:i + _METRIC_CHUNK])
    if logged is not None and named:
        logged.advance(epoch, named)


def finish_run(client: Any, run_id: str, run_tags: dict[str, str], out: Path) -> None:
    """The run's closing tags, its result files and final checkpoint, status FINISHED."""
    if run_tags:
        log_tags(client, run_id, run_tags)
    for name in RUN_FILES:
        if (out / name).is_file():
            client.log_artifact(run_id, str(out / name))
    if (out / "checkpoints" / "final.pt").is_file():
        client.log_artifact(run_id, str(out / "checkpoints" / "final.pt"), artifact_path="checkpoints")
    client.set_terminated(run_id, status="FINISHED")


def fail_run(client: Any, run_id: str, status: str, error: str) -> None:
    log_tags(client, run_id, {"error": error})
    client.set_terminated(run_id, status=status)

"""Where runs are tracked: the store's URI (MLFLOW_TRACKING_URI, else a local SQLite file under ./mlruns),
a fail-fast probe of HTTP servers, and the one get-or-create of MLflow experiments everything uses."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Any, Iterator

from toolkit.errors import UserError
from toolkit.track.schema_template import seed_new_store


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


#: MLflow 3's UI opens an experiment in its GenAI view (traces) unless the experiment says it holds model
#: training runs; this tag (read by the UI) says so.
KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"


def experiment_id(client: Any, name: str, artifact_root: str | None, uri: str, description: str | None = None) -> str:
    """The id of experiment `name`, created (with `artifact_root`) when missing and marked as model training
    (KIND_TAG), with `description` as its note; safe against a concurrent run creating it meanwhile. Any store
    failure is a one-line UserError."""
    try:
        exp = client.get_experiment_by_name(name)
        if exp is not None:
            if exp.tags.get(KIND_TAG) is None:  # made by an older toolkit or by hand
                client.set_experiment_tag(exp.experiment_id, KIND_TAG, KIND)
            return exp.experiment_id
        tags = {KIND_TAG: KIND, **({"mlflow.note.content": description} if description else {})}
        return client.create_experiment(name, artifact_location=artifact_root, tags=tags)
    except Exception as exc:  # noqa: BLE001 - any store failure means we cannot track
        if "already exists" in str(exc):  # created by a concurrent run meanwhile
            return client.get_experiment_by_name(name).experiment_id
        raise UserError(f"MLflow tracking store {uri} is unreachable: {str(exc).splitlines()[0][:200]}") from None


def open_client(uri: str) -> Any:
    """An MlflowClient on `uri` whose schema exists (created or migrated under `store_lock`); one-line error
    when the store cannot be used."""
    import logging

    from mlflow.tracking import MlflowClient

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        with store_lock(uri):
            seed_new_store(uri)
            client = MlflowClient(tracking_uri=uri)
            client.search_experiments(max_results=1)
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"MLflow tracking store {uri} is unusable: {str(exc).splitlines()[0][:200]}") from None
    return client

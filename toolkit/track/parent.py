"""The MLflow run that groups other runs (the seeds of `--seeds`, the trials of `toolkit tune`): children carry
its id as `mlflow.parentRunId`. One implementation for both, so parents look and close the same way."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from toolkit.errors import UserError
from toolkit.track.records import error_status, log_tags
from toolkit.track.store import experiment_id, open_client, tracking_uri


class ParentRun:
    """Create a parent run (or reopen `run_id`, on --resume) in `store` (default: `tracking_uri()`)."""

    def __init__(self, experiment: str, run_name: str, tags: dict[str, str], *, params: dict[str, str] | None = None,
                 run_id: str | None = None, store: tuple[str, str | None] | None = None) -> None:
        self.uri, self.artifact_root = store or tracking_uri()
        self.client = open_client(self.uri)
        try:
            if run_id is not None:
                self.run_id = run_id
                self.client.update_run(run_id, status="RUNNING")
                return
            # the recipe's description (the run's note) also describes an experiment the parent creates
            exp_id = experiment_id(self.client, experiment, self.artifact_root, self.uri, tags.get("mlflow.note.content"))
            self.run_id = self.client.create_run(exp_id, run_name=run_name, tags=tags).info.run_id
            if params:
                self.log_params(params)
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - any store failure means we cannot track
            raise UserError(f"MLflow tracking store {self.uri} is unusable: {str(exc).splitlines()[0][:200]}") from None

    def log_params(self, params: dict[str, str]) -> None:
        """Params not yet on the run (MLflow refuses to change a logged param)."""
        from mlflow.entities import Param

        logged = set(self.client.get_run(self.run_id).data.params)
        items = [Param(k, str(v)[:6000]) for k, v in params.items() if k not in logged]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i:i + 100])

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        for i in range(0, len(items), 1000):
            self.client.log_batch(self.run_id, metrics=items[i:i + 1000])

    def log_tags(self, tags: dict[str, str]) -> None:
        log_tags(self.client, self.run_id, tags)

    def log_artifact(self, path: str | Path) -> None:
        if Path(path).is_file():
            self.client.log_artifact(self.run_id, str(path))

    def finish(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status=status)

    def fail(self, error: BaseException) -> None:
        self.log_tags({"error": f"{type(error).__name__}: {error}"})
        self.client.set_terminated(self.run_id, status=error_status(error))

    @classmethod
    def reopen(cls, run_id: str, uri: str) -> "ParentRun":
        """The parent run `run_id` in the store at `uri`, without changing its status."""
        self = cls.__new__(cls)
        self.uri, self.artifact_root = uri, None
        self.client = open_client(uri)
        self.run_id = run_id
        return self

    def status(self) -> Any:
        return self.client.get_run(self.run_id).info.status

"""MLflow tracking of Ray Tune trials from the search's driver process.

Importing MLflow and opening its store costs a fresh trial process about 1.7 s (measured in
benchmarks/RESULTS.md), which on short trials was most of `toolkit tune`'s overhead over untracked Ray
Tune. So a trial on the driver's machine does not touch MLflow: `JournalTracker` appends what the run
would log (params, tags, per-epoch metrics, artifacts, end or error) as JSON lines to its folder's
`tracking.jsonl`, and the driver, which has MLflow loaded for the parent run anyway, replays each journal
into the trial's child run (`ChildRuns`) every time Tune's loop turns and when the trial ends. The
child run is the same as one written by the trial itself (same helpers in toolkit/tracking.py).

Driver-side bookkeeping per trial lives in `mlflow_child.json` beside the journal (run id and how far the
journal has been replayed), so a resumed search neither duplicates metrics nor opens a second run.
A trial on another machine of a Ray cluster cannot be read this way and tracks itself (`[tune] tracking`).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from toolkit.run.events import Observer
from toolkit.run.folder import RunFolder
from toolkit.track.records import (create_run, error_status, fail_run, finish_run, finite, log_epoch, log_tags,
                                   params_of, plugin_tags, run_dataset, run_name, start_tags, trial_run_name)
from toolkit.track.steps import LoggedSteps
from toolkit.track.store import experiment_id


class JournalTracker(Observer):
    """Trial side: writes the run's tracking events to OUTPUT_DIR/tracking.jsonl (no MLflow import)."""

    def __init__(self) -> None:
        self._fh: Any = None
        self._run_tags: dict[str, str] = {}
        self._output_dir: str | None = None

    def _write(self, event: dict[str, Any]) -> None:
        if self._fh is None:
            return
        self._fh.write(json.dumps(event, default=str) + "\n")
        self._fh.flush()  # the driver may read it at any moment; it only takes whole lines

    def on_run_start(self, *, run: Any) -> None:
        path = RunFolder(run.output_dir).journal
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(path, "a", encoding="utf-8")
        self._run_tags = run.tags  # filled during the run, logged at its end
        self._output_dir = str(Path(run.output_dir).resolve())  # where a failure leaves its traceback.txt
        self._write({"event": "start", "name": run_name(run), "tags": start_tags(run),
                     "params": params_of(run), "dataset": run_dataset(run), "plugin_tags": plugin_tags(run)})

    def on_epoch_end(self, *, stage: str, epoch: int, metrics: dict[str, float], state: Any) -> None:
        self._write({"event": "epoch", "stage": stage, "epoch": epoch, "metrics": finite(metrics),
                     "time_ms": int(time.time() * 1000)})

    def on_artifact(self, *, path: Any, artifact_path: str) -> None:
        self._write({"event": "artifact", "path": str(Path(path).resolve()), "artifact_path": artifact_path})

    def on_run_end(self, *, summary: dict[str, Any], output_dir: Any) -> None:
        self._write({"event": "end", "tags": dict(self._run_tags), "output_dir": str(Path(output_dir).resolve())})
        self._close()

    def on_exception(self, *, error: BaseException) -> None:
        self._write({"event": "error", "status": error_status(error), "error": f"{type(error).__name__}: {error}",
                     "output_dir": self._output_dir})
        self._close()

    def _close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class ChildRuns:
    """Driver side: replays trial journals into MLflow child runs of the search's parent run."""

    def __init__(self, uri: str, artifact_root: str | None, experiment: str, parent_run_id: str,
                 trials_dir: str | Path) -> None:
        self.uri, self.artifact_root, self.experiment = uri, artifact_root, experiment
        self.parent_run_id, self.trials_dir = parent_run_id, Path(trials_dir)
        self._client: Any = None
        self._exp_id: str | None = None

    def __getstate__(self) -> dict[str, Any]:  # pickled into Ray's experiment state: no live client
        return {**self.__dict__, "_client": None, "_exp_id": None}

    @property
    def client(self) -> Any:
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.uri)
        return self._client

    def _state_path(self, trial_id: str) -> Path:
        return RunFolder(self.trials_dir / trial_id).child_state

    def _state(self, trial_id: str) -> dict[str, Any]:
        path = self._state_path(trial_id)
        return json.loads(path.read_text()) if path.is_file() else {"run_id": None, "offset": 0}

    def _save(self, trial_id: str, state: dict[str, Any]) -> None:
        path = self._state_path(trial_id)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, path)

    def run_id(self, trial_id: str) -> str | None:
        return self._state(trial_id).get("run_id")

    def sync(self, trial_id: str) -> str | None:
        """Log what the trial's journal holds beyond what was logged before; returns the child run id."""
        journal = RunFolder(self.trials_dir / trial_id).journal
        state = self._state(trial_id)
        if not journal.is_file():
            return state.get("run_id")
        with open(journal, "rb") as fh:
            fh.seek(state["offset"])
            data = fh.read()
        end = data.rfind(b"\n") + 1  # a line still being written waits for the next sync
        for line in data[:end].splitlines():
            if line.strip():
                self._apply(trial_id, state, json.loads(line))
        if end:
            state["offset"] += end
            self._save(trial_id, state)
        return state.get("run_id")

    def _apply(self, trial_id: str, state: dict[str, Any], event: dict[str, Any]) -> None:
        kind, run_id = event["event"], state.get("run_id")
        logged = LoggedSteps(RunFolder(self.trials_dir / trial_id).logged_steps, fresh=kind == "start" and run_id is None)
        if kind == "start":
            if run_id is None:
                if self._exp_id is None:
                    self._exp_id = experiment_id(self.client, self.experiment, self.artifact_root, self.uri)
                tags = {**event["tags"], "mlflow.parentRunId": self.parent_run_id, "tune.trial_id": trial_id}
                run_id = create_run(self.client, self._exp_id, trial_run_name(trial_id, event["name"]), tags,
                                    event["params"], event.get("dataset"))
                state["run_id"] = run_id
                self._save(trial_id, state)  # before anything else: a crash here must not open a second run
            else:  # the trial was retried or the search resumed: same run, continued
                self.client.update_run(run_id, status="RUNNING")
            log_tags(self.client, run_id, event["plugin_tags"])
        elif run_id is None:
            return  # nothing can be logged before the run exists (a journal cut before its start line)
        elif kind == "epoch":
            log_epoch(self.client, run_id, event["stage"], int(event["epoch"]), event["metrics"], event["time_ms"], logged)
        elif kind == "artifact":
            if Path(event["path"]).is_file():
                self.client.log_artifact(run_id, event["path"], artifact_path=event["artifact_path"] or None)
        elif kind == "end":
            finish_run(self.client, run_id, event["tags"], Path(event["output_dir"]))
        elif kind == "error":
            out = event.get("output_dir")  # journals written before it was recorded have none
            fail_run(self.client, run_id, event["status"], event["error"], Path(out) if out else None)

    def close_if_running(self, run_id: str, status: str, reason: str) -> None:
        """A trial Ray stopped (ASHA) or lost (worker died) left its run RUNNING: close it with the reason."""
        if self.client.get_run(run_id).info.status == "RUNNING":
            log_tags(self.client, run_id, {"tune.stopped": reason})
            self.client.set_terminated(run_id, status=status)


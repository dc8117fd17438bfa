"""Hands each self-labeling epoch's metrics to Ray Tune, so a scheduler (ASHA) can stop poor trials."""

from __future__ import annotations

import math
from typing import Any, Callable

from toolkit.errors import TrainingError
from toolkit.recipe.tune_section import LABEL_FREE_METRIC
from toolkit.run.events import Observer
from toolkit.tune.objective import balanced_confidence



class TuneReporter(Observer):
    """Reports each self-labeling epoch to Ray Tune. The last epoch is reported only after the run has
    finished (artifacts written, MLflow run closed), because a scheduler may stop a trial at any report."""

    def __init__(self, metric: str, final_epoch: int, tracker: Any = None, trial_id: str = "",
                 report: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.metric, self.final_epoch, self.tracker, self.trial_id = metric, final_epoch, tracker, trial_id
        self._report = report  # None: ray.tune.report; a data-parallel worker passes ray.train.report
        self.run_id: str | None = None
        self._pending: dict[str, Any] | None = None
        self._reported = False

    def on_run_start(self, *, run: Any) -> None:
        self.run_id = run.mlflow_run_id
        client = getattr(self.tracker, "client", None)
        if client is not None and self.run_id:
            from mlflow.entities import RunTag

            from toolkit.track.records import run_name, trial_run_name

            client.log_batch(self.run_id, tags=[RunTag("tune.trial_id", self.trial_id),
                                                RunTag("mlflow.runName", trial_run_name(self.trial_id, run_name(run)))])

    def result(self, epoch: int, metrics: dict[str, float]) -> dict[str, Any]:
        out: dict[str, Any] = {k: float(v) for k, v in metrics.items()
                               if isinstance(v, (int, float)) and math.isfinite(float(v))}
        score = balanced_confidence(out)
        if score is not None:
            out[LABEL_FREE_METRIC] = score
        value = out.get(self.metric)
        if value is None:
            bad = metrics.get(self.metric)
            why = "is not finite" if bad is not None else f"was not reported (reported: {', '.join(sorted(out))})"
            raise TrainingError(f"epoch {epoch}: the search metric '{self.metric}' {why}")
        out.update(epoch=epoch, mlflow_run_id=self.run_id or "")
        return out

    def on_epoch_end(self, *, stage: str, epoch: int, metrics: dict[str, float], state: Any) -> None:
        if stage != "self_label":
            return
        result = self.result(epoch, metrics)
        if epoch >= self.final_epoch:
            self._pending = result
            return
        self.report(result)
        self._reported = True

    def report(self, result: dict[str, Any]) -> None:
        if self._report is not None:
            self._report(result)
            return
        from ray import tune

        tune.report(result)

    def on_run_end(self, *, summary: dict[str, Any], output_dir: Any) -> None:
        if self._pending is None and not self._reported:  # resumed after its last epoch: report the summary
            self._pending = self.result(int(summary.get("epochs") or 0),
                                        {k: v for k, v in summary.items() if not isinstance(v, bool)})
        if self._pending is not None:
            self.report(self._pending)

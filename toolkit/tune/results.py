"""A finished (or interrupted) search read back from Ray Tune: one row per trial, its status, and the best."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable


@dataclass
class SearchResult:
    output_dir: Path
    metric: str
    mode: str
    parent_run_id: str
    rows: list[dict[str, Any]]
    best: dict[str, Any] | None
    interrupted: bool
    seconds: float


def one_line(error: BaseException) -> str:
    """The root cause of a trial's error as one line (Ray wraps it in its own exception types)."""
    cause: BaseException = error
    while cause.__cause__ is not None:
        cause = cause.__cause__
    text = str(cause).strip().splitlines()
    lines = [line for line in text if line.strip()]
    return f"{type(cause).__name__}: {lines[-1] if lines else ''}"[:300]


def trial_rows(grid: Any, epochs: int, metric: str, mode: str, run_id_of: Callable[[str], str | None]) -> list[dict[str, Any]]:
    """One row per trial of Ray's ResultGrid, best first: status finished / stopped (by the scheduler) /
    failed / unfinished, the sampled config, the metric and the trial's MLflow run id."""
    rows = []
    # Ray's ResultGrid holds no trial status; its experiment analysis has the trials, matched here by id
    # (the trial folder's name, see trial_dirname) rather than by position.
    trials = list(getattr(getattr(grid, "_experiment_analysis", None), "trials", None) or [])
    ray_status_of = {str(t.trial_id): t.status for t in trials}
    for result in grid:
        metrics = result.metrics or {}
        config = dict(result.config or {})
        error = result.error
        wanted = int(config.get("train.epochs", epochs))
        trial_id = Path(result.path).name
        ray_status = ray_status_of.get(trial_id, "TERMINATED" if metrics.get("done") else "")
        if error is not None or ray_status == "ERROR":
            status = "failed"
        elif ray_status != "TERMINATED" or metrics.get("epoch") is None:  # a finished trial reported its epochs
            status = "unfinished"
        elif int(metrics["epoch"]) < wanted:
            status = "stopped"
        else:
            status = "finished"
        rows.append({"trial_id": trial_id, "status": status, "config": config,
                     "metric": metrics.get(metric), "epoch": metrics.get("epoch"),
                     "mlflow_run_id": metrics.get("mlflow_run_id") or run_id_of(trial_id),
                     "error": one_line(error) if error is not None else None})
    sign = -1.0 if mode == "max" else 1.0
    rows.sort(key=lambda r: (r["metric"] is None, sign * r["metric"] if r["metric"] is not None else 0.0))
    return rows


def pick_best(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Trials that ran every epoch compete on equal budgets; an ASHA-stopped trial wins only if none did."""
    return (next((r for r in rows if r["metric"] is not None and r["status"] == "finished"), None)
            or next((r for r in rows if r["metric"] is not None and r["status"] == "stopped"), None))

"""What a run logs to MLflow, as functions of plain values: the in-process tracker and the search driver
(which logs trials from their journals) write identical runs through them."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from toolkit.run.folder import RESULT_FILES, RunFolder
from toolkit.track.steps import LoggedSteps

_PARAM_CHUNK, _TAG_CHUNK, _METRIC_CHUNK = 100, 100, 1000


def run_name(run: Any) -> str:
    return f"{run.recipe.experiment.name}-s{run.recipe.experiment.seed}"


def start_tags(run: Any) -> dict[str, str]:
    recipe = run.recipe
    return {"protocol": recipe.experiment.protocol, "oracle": str(recipe.experiment.oracle).lower(),
            "dataset": recipe.config.data.dataset, "device": str(run.device), "recipe_file": recipe.source}


def plugin_tags(run: Any) -> dict[str, str]:
    tags = {f"plugin.{slot}": p["name"] for slot, p in run.plugins.items()}
    tags.update({f"plugin.{slot}.distribution": f"{p['distribution']} {p['version']}" for slot, p in run.plugins.items()})
    tags["output_dir"] = str(Path(run.output_dir).resolve())
    return tags


def finite(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(float(v))}


def error_status(error: BaseException) -> str:
    return "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"


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
    folder = RunFolder(out)
    for name in RESULT_FILES:
        if folder.file(name).is_file():
            client.log_artifact(run_id, str(folder.file(name)))
    if folder.final_checkpoint.is_file():
        client.log_artifact(run_id, str(folder.final_checkpoint), artifact_path="checkpoints")
    client.set_terminated(run_id, status="FINISHED")


def fail_run(client: Any, run_id: str, status: str, error: str, out: Path | None = None) -> None:
    """Close a run that failed or was interrupted: its error as a tag, its traceback file when one was written."""
    log_tags(client, run_id, {"error": error})
    if out is not None and RunFolder(out).traceback.is_file():
        client.log_artifact(run_id, str(RunFolder(out).traceback))
    client.set_terminated(run_id, status=status)

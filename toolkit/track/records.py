"""What a run logs to MLflow, as functions of plain values: the in-process tracker and the search driver
(which logs trials from their journals) write identical runs through them."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from toolkit.recipe.names import override_summary
from toolkit.run.folder import RESULT_FILES, RunFolder
from toolkit.track.provenance import provenance_tags
from toolkit.track.steps import LoggedSteps

_PARAM_CHUNK, _TAG_CHUNK, _METRIC_CHUNK = 100, 100, 1000


def run_name(run: Any) -> str:
    """`<experiment>-s<seed>`, followed by the --set overrides in short, so two runs that differ are told apart."""
    recipe = run.recipe
    summary = override_summary(list(getattr(recipe, "overrides", [])))
    base = f"{recipe.experiment.name}-s{recipe.experiment.seed}"
    return f"{base} {summary}" if summary else base


def trial_run_name(trial_id: str, name: str) -> str:
    """A search trial's run: its id, then what it sampled (part of `name`, see run_name)."""
    return f"trial-{trial_id} {name.split(' ', 1)[1]}" if " " in name else f"trial-{trial_id}"


def start_tags(run: Any) -> dict[str, str]:
    recipe = run.recipe
    overrides = [o for o in getattr(recipe, "overrides", []) if not o.startswith("experiment.seed=")]
    tags = {"protocol": recipe.experiment.protocol, "oracle": str(recipe.experiment.oracle).lower(),
            "dataset": recipe.config.data.dataset, "device": str(run.device), "recipe_file": recipe.source,
            "overrides": " ".join(overrides) if overrides else "none"}
    if recipe.experiment.description:
        tags["mlflow.note.content"] = recipe.experiment.description  # the run's Description in the UI
    tags.update(provenance_tags(recipe.source))
    return tags


def plugin_tags(run: Any) -> dict[str, str]:
    tags = {f"plugin.{slot}": p["name"] for slot, p in run.plugins.items()}
    # short keys: the UI cuts long tag names (plugin.head_init.distribution was unreadable)
    tags.update({f"pkg.{slot}": f"{p['distribution']} {p['version']}" for slot, p in run.plugins.items()})
    tags["output_dir"] = str(Path(run.output_dir).resolve())
    return tags


def run_dataset(run: Any) -> dict[str, Any]:
    """What `log_dataset` records for `run`: the data's name and source, and its facts."""
    return {**getattr(run, "data_source", {}), **getattr(run, "data", {})} if getattr(run, "data", None) else {}


def params_of(run: Any) -> dict[str, str]:
    """The run's MLflow params: the recipe keys it uses (a search's sampled keys always) and `data.<fact>` for
    the facts of the data it loaded (toolkit.data.base.data_facts)."""
    from toolkit.recipe.used_keys import used_params

    recipe = run.recipe
    searched = set(recipe.config.tune.space) if recipe.config.tune is not None else set()
    params = used_params(recipe.flat_params(), searched)
    params.update({f"data.{key}": str(value) for key, value in getattr(run, "data", {}).items()})
    return params


def finite(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(float(v))}


def error_status(error: BaseException) -> str:
    return "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"


def create_run(client: Any, exp_id: str, name: str, tags: dict[str, str], params: dict[str, str],
               dataset: dict[str, Any] | None = None) -> str:
    from mlflow.entities import Param

    run_id = client.create_run(exp_id, run_name=name, tags=tags).info.run_id
    items = [Param(k, str(v)[:6000]) for k, v in params.items()]
    for i in range(0, len(items), _PARAM_CHUNK):
        client.log_batch(run_id, params=items[i:i + _PARAM_CHUNK])
    if dataset:
        log_dataset(client, run_id, dataset)
    return run_id


def log_dataset(client: Any, run_id: str, dataset: dict[str, Any]) -> None:
    """The data as an MLflow dataset input (the UI's Datasets column): name, content hash as digest, source,
    and the facts (N, K, size, channels) as its profile."""
    import json

    from mlflow.entities import Dataset, DatasetInput, InputTag

    facts = {k: v for k, v in dataset.items() if k not in ("name", "source", "content_hash")}
    entry = Dataset(name=str(dataset["name"]), digest=str(dataset["content_hash"])[:36], source_type="local",
                    source=json.dumps({"source": str(dataset.get("source", ""))}), profile=json.dumps(facts))
    client.log_inputs(run_id, datasets=[DatasetInput(entry, tags=[InputTag("mlflow.data.context", "training")])])


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

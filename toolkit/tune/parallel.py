"""Data-parallel trials (`[tune.resources] workers > 1`): each Tune trial launches a Ray Train TorchTrainer.

Ray 2.60 (Train V2) no longer takes a Trainer as a Tune trainable; the supported way is a Tune function
that builds a TorchTrainer and calls `fit()`, with `TuneReportCallback` forwarding rank 0's
`ray.train.report` results to Tune. Every worker runs the same Engine (see toolkit/run/parallel.py);
rank 0 alone tracks (journal or MLflow, as ordinary trials) and writes the trial folder, the others only report (Ray Train wants every
rank to report the same number of times).

A trial that ASHA stops is killed with its Train controller, and Ray Train's own clean-up of the
workers' placement group relies on the Ray state API (the dashboard, absent from `ray[tune]` and off in
local searches). So rank 0 writes its placement group's id into the trial folder, and the search's driver
removes that group when the trial has ended (`release_workers`); otherwise the stopped trial's CPUs/GPUs
stay reserved and the next data-parallel trial waits forever.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit.run.folder import RunFolder

if TYPE_CHECKING:
    from toolkit.tune.trial import TrialSettings


def record_placement_group(out: Path) -> None:
    """Rank 0: note the workers' placement group for `release_workers`."""
    from ray.util import get_current_placement_group

    pg = get_current_placement_group()
    if pg is not None:
        out.mkdir(parents=True, exist_ok=True)
        RunFolder(out).placement_group.write_text(pg.id.hex())


def release_workers(trial_dir: Path) -> bool:
    """Driver, once a trial has ended: remove its workers' placement group if it still exists (True then)."""
    path = RunFolder(trial_dir).placement_group
    if not path.is_file():
        return False
    from ray._raylet import PlacementGroupID
    from ray.util.placement_group import PlacementGroup, placement_group_table, remove_placement_group

    pg = PlacementGroup(PlacementGroupID(bytes.fromhex(path.read_text().strip())))
    if placement_group_table(pg).get("state") in (None, "REMOVED"):
        return False
    remove_placement_group(pg)
    return True


def run_parallel_trial(config: dict[str, Any], settings: "TrialSettings") -> None:
    """Tune side of one data-parallel trial: decide resume once (before any rank writes), run the workers."""
    from ray import tune
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    trial_id = tune.get_context().get_trial_id()
    out = Path(settings.trials_dir) / trial_id
    loop_config = {"config": config, "settings": settings, "trial_id": trial_id, "out": str(out),
                   "resume": RunFolder(out).state.is_file()}
    per_worker = {"CPU": settings.cpus, **({"GPU": settings.gpus} if settings.gpus else {})}
    trainer = TorchTrainer(
        train_worker, train_loop_config=loop_config,
        scaling_config=ScalingConfig(num_workers=settings.workers, use_gpu=settings.gpus > 0,
                                     resources_per_worker=per_worker),
        run_config=RunConfig(name=trial_id, storage_path=str(Path(settings.trials_dir).parent / "ray" / "train"),
                             callbacks=[TuneReportCallback()], failure_config=FailureConfig(max_failures=0)))
    trainer.fit()


def train_worker(loop_config: dict[str, Any]) -> None:
    """One rank: the trial's Engine run, inside the process group Ray Train set up."""
    import ray.train
    import torch

    from toolkit.run.engine import Engine
    from toolkit.run.events import Observer
    from toolkit.recipe.loading import apply_overrides, validate
    from toolkit.tune.reporter import TuneReporter
    from toolkit.tune.trial import trial_tracker

    settings: TrialSettings = loop_config["settings"]
    os.environ.update(settings.env)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    torch.set_num_threads(max(1, int(settings.cpus)))
    recipe = validate(apply_overrides(settings.tree, settings.overrides(loop_config["config"])), settings.source)
    rank = ray.train.get_context().get_world_rank()
    device = "cpu"
    if settings.gpus > 0:  # Ray Train shows a node's workers all its GPUs and picks one per local rank
        from ray.train.torch import get_device

        device = str(get_device())
    tracker = trial_tracker(settings) if rank == 0 else None
    if rank == 0:
        record_placement_group(Path(loop_config["out"]))
    reporter = TuneReporter(settings.metric, recipe.config.train.epochs, tracker, loop_config["trial_id"],
                            report=ray.train.report)
    observers: list[Observer] = [tracker, reporter] if tracker is not None else [reporter]
    Engine(recipe, loop_config["out"], device=device, observers=observers, resume=loop_config["resume"]).run()

"""One trial of a search: `toolkit run` with the sampled `--set` overrides, in the search's trials/<id>/ folder.

A trial runs the same Engine `toolkit run` uses, with two observers: a tracker for its MLflow child run (a
journal the driver replays, or MLflow itself on another machine) and `TuneReporter`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolkit.recipe.tune_section import as_overrides
from toolkit.run.events import Observer
from toolkit.run.folder import RunFolder
from toolkit.tune.reporter import TuneReporter


@dataclass
class TrialSettings:
    """Everything a trial needs, shipped to Ray workers (so no environment has to be shared)."""

    tree: dict[str, Any]  # the resolved recipe without [tune]
    source: str
    trials_dir: str
    metric: str
    mlflow_uri: str
    artifact_root: str | None
    experiment: str
    parent_run_id: str
    cpus: float
    literal_keys: list[str] = field(default_factory=list)  # choice keys Ray carries as TOML literals
    env: dict[str, str] = field(default_factory=dict)
    workers: int = 1  # > 1: a data-parallel trial (toolkit/tune/parallel.py); cpus and gpus are then per worker
    gpus: float = 0.0
    tracking: str = "auto"  # [tune] tracking: see toolkit/track/journal.py
    driver_node: str = ""  # Ray node id of the search's driver

    def overrides(self, config: dict[str, Any]) -> list[str]:
        plain = {k: v for k, v in config.items() if k not in self.literal_keys}
        return as_overrides(plain) + [f"{k}={config[k]}" for k in self.literal_keys if k in config]


def trial_tracker(settings: TrialSettings) -> Observer:
    """The journal the driver logs from (no MLflow in this process), or MLflow directly off the driver's node."""
    from toolkit.track.journal import JournalTracker

    if journal_here(settings.tracking, settings.driver_node):
        return JournalTracker()
    from toolkit.track.tracker import MlflowTracker

    return MlflowTracker(settings.mlflow_uri, settings.artifact_root, settings.experiment, settings.parent_run_id)


def run_trial(config: dict[str, Any], settings: TrialSettings) -> None:
    """One trial = `toolkit run` with the sampled overrides, in trials/<trial_id>/ (resumed if it exists)."""
    import torch
    from ray import tune

    from toolkit.run.engine import Engine
    from toolkit.recipe.loading import apply_overrides, validate

    os.environ.update(settings.env)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    torch.set_num_threads(max(1, int(settings.cpus)))
    sampled = settings.overrides(config)
    recipe = validate(apply_overrides(settings.tree, sampled), settings.source)
    recipe.overrides = sampled  # the trial's run name and `overrides` tag say what it sampled
    trial_id = tune.get_context().get_trial_id()
    out = Path(settings.trials_dir) / trial_id
    tracker = trial_tracker(settings)
    reporter = TuneReporter(settings.metric, recipe.config.train.epochs, tracker, trial_id)
    # A retried or restored trial continues its own run: same folder, same MLflow run, from its last epoch.
    Engine(recipe, out, observers=[tracker, reporter], resume=RunFolder(out).state.is_file()).run()


def trial_dirname(trial: Any) -> str:
    """Ray's trial folder is named by the trial id alone, so results map back to trials/<trial_id>."""
    return str(trial.trial_id)


def journal_here(mode: str, driver_node: str) -> bool:
    """Whether this trial process should journal (True) or track itself: `[tune] tracking`, where auto means
    journal when this process runs on the driver's node (so the driver can read the trial's folder)."""
    if mode != "auto":
        return mode == "driver"
    if not driver_node:
        return False
    import ray

    return ray.get_runtime_context().get_node_id() == driver_node

"""`toolkit tune`: a Ray Tune search over a recipe's `[tune.space]`, where every trial is an ordinary run.

The driver validates the recipe and the space, opens the search's MLflow parent run, hands trials to Ray
Tune (toolkit/tune/trial.py), replays their journals into MLflow child runs (toolkit/track/journal.py),
and ends with trials.json, best.toml and the parent's best_* figures. Ray is imported lazily: recipes and
the rest of the CLI must not pay for it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from toolkit.errors import RecipeError, UserError
from toolkit.recipe.tune_section import LABEL_FREE_METRIC, TuneConfig, check_grace_period
from toolkit.track.parent import ParentRun
from toolkit.tune.objective import SUPERVISED
from toolkit.tune.results import SearchResult, pick_best, trial_rows
from toolkit.tune.space import max_epochs, scheduler, search_space, searcher
from toolkit.tune.state import SearchFolder, SearchState
from toolkit.tune.trial import TrialSettings, run_trial, trial_dirname


def _trainable(settings: TrialSettings, cfg: TuneConfig) -> Any:
    """An ordinary trial holds its CPUs/GPUs itself. A data-parallel one only waits: its Ray Train workers
    reserve `cpus`/`gpus` each, so the trial's own process must not take a share of them; it reserves a
    token 1 MiB of Ray's memory resource instead, because Ray Tune refuses a trial that asks for nothing."""
    from ray import tune

    if cfg.resources.workers > 1:
        from toolkit.tune.parallel import run_parallel_trial

        return tune.with_resources(tune.with_parameters(run_parallel_trial, settings=settings),
                                   {"cpu": 0, "memory": 2**20})
    return tune.with_resources(tune.with_parameters(run_trial, settings=settings),
                               {"cpu": cfg.resources.cpus, "gpu": cfg.resources.gpus})


def _parallel_concurrency(cfg: TuneConfig) -> int | None:
    """Data-parallel trials take no Tune resources, so Tune would start them all at once, each waiting for
    workers: run only as many as the cluster's CPUs (and GPUs) hold. None (Tune decides) otherwise."""
    res = cfg.resources
    if res.workers <= 1:
        return None
    import ray

    total = ray.cluster_resources()
    fits = int(total.get("CPU", 0) // (res.cpus * res.workers))
    if res.gpus:
        fits = min(fits, int(total.get("GPU", 0) // (res.gpus * res.workers)))
    return max(1, fits)


class Search:
    """Sets up, runs and summarises one search (or resumes one from its folder)."""

    def __init__(self, output_dir: Path, *, address: str | None = None, console: Console | None = None,
                 progress: bool = True) -> None:
        self.output_dir = Path(output_dir).resolve()
        self.folder = SearchFolder(self.output_dir)
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.console = console or Console(stderr=True)
        self.progress = progress
        self._started_ray = False

    # ------------------------------------------------------------------------------------ set-up
    def start(self, recipe_path: str | Path, overrides: list[str], num_samples: int | None) -> SearchResult:
        from toolkit.recipe.loading import load_recipe, validate

        if self.folder.state.is_file():
            raise UserError(f"{self.output_dir} already holds a search; continue it with --resume or pick another "
                            "--output-dir")
        rec = load_recipe(recipe_path, overrides, check_tune=True)
        if rec.config.tune is None:
            raise RecipeError("missing: add a [tune] section with a [tune.space] table (see docs/tuning.md)",
                              file=str(recipe_path), section="tune")
        tree = rec.resolved()
        if num_samples is not None:
            if num_samples < 1:
                raise UserError(f"--num-samples must be at least 1 (got {num_samples})")
            tree["tune"]["num_samples"] = num_samples
            rec = validate(tree, rec.source, check_tune=True)
        cfg = rec.config.tune
        assert cfg is not None
        check_grace_period(cfg, rec.config.train.epochs, rec.source)
        labelled = self._has_labels(rec) if cfg.metric is None or cfg.metric in SUPERVISED else False
        metric = cfg.metric or ("acc" if labelled else LABEL_FREE_METRIC)
        if cfg.metric in SUPERVISED and not labelled:
            raise RecipeError(f"'{cfg.metric}' needs labels and the data set has none; use a label-free metric such "
                              f"as {LABEL_FREE_METRIC} (see docs/tuning.md)", file=rec.source, section="tune",
                              key="metric")
        mode = cfg.direction(metric)
        parent = self._parent_run(rec, metric, mode, cfg)
        state = SearchState(parent.run_id, metric, mode, tree, rec.source, parent.uri)  # type: ignore[arg-type]
        state.write(self.folder)
        return self._run(state, resume=False)

    def resume(self) -> SearchResult:
        return self._run(SearchState.read(self.folder), resume=True)

    @staticmethod
    def _has_labels(rec: Any) -> bool:
        from toolkit.data.registry import labelled_without_loading, load_data

        cfg = rec.config
        if labelled_without_loading(cfg.data.dataset):
            return True
        splits = load_data(cfg.data, cfg.experiment.protocol, cfg.experiment.seed)
        return (splits.test if splits.test is not None else splits.train).labels is not None

    def _parent_run(self, rec: Any, metric: str, mode: str, cfg: TuneConfig) -> ParentRun:
        name = rec.experiment.name
        tags = {"toolkit.kind": "tune", "tune.metric": metric, "tune.mode": mode,
                "tune.output_dir": str(self.output_dir), "recipe_file": rec.source}
        if rec.experiment.description:
            tags["mlflow.note.content"] = rec.experiment.description
        params = {f"tune.space.{k}": d.describe() for k, d in cfg.space.items()}
        params.update({f"tune.{k}": str(getattr(cfg, k)) for k in ("num_samples", "search_alg", "scheduler")})
        return ParentRun(name, f"tune-{name}", tags, params=params)

    # ------------------------------------------------------------------------------------- search
    def _settings(self, state: SearchState, cfg: TuneConfig, literal: list[str]) -> TrialSettings:
        import ray

        from toolkit.track.store import tracking_uri

        uri = state.mlflow_uri
        artifact_root = tracking_uri()[1] if uri == tracking_uri()[0] else None
        tree = state.base_recipe
        env = {k: v for k, v in os.environ.items() if k in ("TOOLKIT_CACHE_DIR", "TOOLKIT_FEATURE_CACHE")}
        return TrialSettings(tree, state.source, str(self.folder.trials), state.metric, uri,
                             artifact_root, tree["experiment"]["name"], state.parent_run_id, cfg.resources.cpus,
                             literal, env, cfg.resources.workers, cfg.resources.gpus, cfg.tracking,
                             ray.get_runtime_context().get_node_id())

    def _run(self, state: SearchState, resume: bool) -> SearchResult:
        from ray import tune

        from toolkit.recipe.loading import validate
        from toolkit.track.journal import ChildRuns
        from toolkit.tune.cluster import start_ray

        start = time.perf_counter()
        rec = validate(state.recipe, state.source)
        cfg = rec.config.tune
        assert cfg is not None
        space, literal = search_space(cfg)
        self._started_ray = start_ray(self.address)
        try:
            settings = self._settings(state, cfg, literal)
            self._children = ChildRuns(settings.mlflow_uri, settings.artifact_root, settings.experiment,
                                       settings.parent_run_id, settings.trials_dir)
            trainable = _trainable(settings, cfg)
            path = str(self.folder.ray)
            if resume:
                if not tune.Tuner.can_restore(path):
                    raise UserError(f"--resume: {path} holds no Ray Tune state to continue")
                ParentRun.reopen(state.parent_run_id, state.mlflow_uri).client.update_run(state.parent_run_id,
                                                                                          status="RUNNING")
                tuner = tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=False,
                                           param_space=space)
            else:
                tuner = self._new_tuner(trainable, space, literal, cfg, state, rec.source)
            grid = tuner.fit()
            return self._finish(state, cfg, grid, literal, time.perf_counter() - start)
        finally:
            if self._started_ray:
                import ray

                ray.shutdown()

    def _new_tuner(self, trainable: Any, space: dict[str, Any], literal: list[str], cfg: TuneConfig,
                   state: SearchState, source: str) -> Any:
        from ray import tune

        from toolkit.tune.callbacks import TrialTracking

        seed = cfg.seed if cfg.seed is not None else int(state.recipe["experiment"]["seed"])
        limit = cfg.max_concurrent or _parallel_concurrency(cfg)
        tune_cfg = tune.TuneConfig(metric=state.metric, mode=state.mode, num_samples=cfg.num_samples,
                                   search_alg=searcher(cfg, seed, literal, limit),
                                   scheduler=scheduler(cfg, max_epochs(state.recipe, cfg), source),
                                   max_concurrent_trials=limit if cfg.search_alg == "optuna" else None,
                                   trial_dirname_creator=trial_dirname,
                                   reuse_actors=cfg.resources.workers <= 1)
        run_cfg = tune.RunConfig(name=self.folder.ray.name, storage_path=str(self.output_dir), verbose=0,
                                 failure_config=tune.FailureConfig(max_failures=cfg.max_failures),
                                 callbacks=[TrialTracking(self._children, self.progress)])
        return tune.Tuner(trainable, param_space=space, tune_config=tune_cfg, run_config=run_cfg)

    # ------------------------------------------------------------------------------------- finish
    def _finish(self, state: SearchState, cfg: TuneConfig, grid: Any, literal: list[str],
                seconds: float) -> SearchResult:
        rows = trial_rows(grid, int(state.recipe["train"]["epochs"]), state.metric, state.mode, self._children.run_id)
        done = sum(r["status"] in ("finished", "stopped", "failed") for r in rows)
        interrupted = done < cfg.num_samples
        best = pick_best(rows)
        self.folder.trials_table.write_text(json.dumps(rows, indent=2, default=str))
        if best is not None:
            self._write_best(state, best, literal)
        state.status = "interrupted" if interrupted else "finished"
        state.write(self.folder)
        self._log_parent(state, best, interrupted)
        return SearchResult(self.output_dir, state.metric, state.mode, state.parent_run_id, rows, best,
                            interrupted, round(seconds, 3))

    def _write_best(self, state: SearchState, best: dict[str, Any], literal: list[str]) -> None:
        from toolkit.recipe.loading import apply_overrides, validate

        tree = state.base_recipe
        settings = TrialSettings(tree, state.source, "", state.metric, "", None, "", "", 1.0, literal)
        rec = validate(apply_overrides(tree, settings.overrides(best["config"])), state.source)
        header = (f"# Best trial {best['trial_id']} of the search in {self.output_dir}\n"
                  f"# {state.metric} = {best['metric']} ({state.mode}); searched: "
                  f"{', '.join(settings.overrides(best['config']))}\n\n")
        self.folder.best_recipe.write_text(header + rec.to_toml())

    def _log_parent(self, state: SearchState, best: dict[str, Any] | None, interrupted: bool) -> None:
        parent = ParentRun.reopen(state.parent_run_id, state.mlflow_uri)
        for path in (self.folder.best_recipe, self.folder.trials_table):
            parent.log_artifact(path)
        if best is not None:
            parent.log_metrics({f"best_{state.metric}": float(best["metric"])})
            parent.log_params({f"best.{k}": str(v) for k, v in best["config"].items()})
            parent.log_tags({"best.trial_id": best["trial_id"], "best.mlflow_run_id": str(best["mlflow_run_id"]),
                             **{f"best.{k}": str(v) for k, v in best["config"].items()}})
        parent.finish("KILLED" if interrupted else "FINISHED")

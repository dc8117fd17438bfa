"""`toolkit tune`: a Ray Tune search over a recipe's `[tune.space]`, where every trial is an ordinary run.

A trial applies its sampled values as `--set` overrides and runs the same Engine `toolkit run` uses, with
two observers: a tracker for its MLflow child run of the search's parent run (a journal the driver replays
into MLflow, toolkit/tune_tracking.py, or MLflow itself on another machine) and `TuneReporter`, which
hands each self-labeling epoch's metrics to Ray Tune so ASHA can stop poor trials. Ray is imported lazily:
recipes and the rest of the CLI must not pay for it.

Search folder layout (DIR): search_state.json (parent run, metric, the recipe searched), ray/ (Ray Tune's
experiment state, what `--resume` restores), trials/<trial_id>/ (each trial's run folder), best.toml.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ray.tune import Callback
from rich.console import Console
from rich.table import Table

from toolkit.errors import RecipeError, TrainingError, UserError
from toolkit.events import Observer
from toolkit.tune_config import LABEL_FREE_METRIC, TuneConfig, as_overrides, check_grace_period, toml_literal

SEARCH_STATE = "search_state.json"
BEST_RECIPE = "best.toml"
RAY_DIR = "ray"
TRIALS_DIR = "trials"
#: Metrics that need ground truth: refused as the objective of a search on unlabelled data.
SUPERVISED = frozenset({"acc", "nmi", "ari", "nmi_geometric", "many_to_one_acc", "ece", "aurc", "auroc", "fpr95",
                        "pseudo_label_acc"})


# ------------------------------------------------------------------------------------------- trial side
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
    workers: int = 1  # > 1: a data-parallel trial (toolkit/tune_parallel.py); cpus and gpus are then per worker
    gpus: float = 0.0
    tracking: str = "auto"  # [tune] tracking: see toolkit/tune_tracking.py
    driver_node: str = ""  # Ray node id of the search's driver

    def overrides(self, config: dict[str, Any]) -> list[str]:
        plain = {k: v for k, v in config.items() if k not in self.literal_keys}
        return as_overrides(plain) + [f"{k}={config[k]}" for k in self.literal_keys if k in config]


def balanced_confidence(metrics: dict[str, float]) -> float | None:
    """Label-free score: mean max-probability times normalised cluster-size entropy (0 if all in one cluster)."""
    conf, ent = metrics.get("mean_confidence"), metrics.get("cluster_entropy")
    if conf is None or ent is None:
        return None
    return float(conf) * float(ent)


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

            client.log_batch(self.run_id, tags=[RunTag("tune.trial_id", self.trial_id),
                                                RunTag("mlflow.runName", f"trial-{self.trial_id}")])

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


def trial_tracker(settings: TrialSettings) -> Observer:
    """The journal the driver logs from (no MLflow in this process), or MLflow directly off the driver's node."""
    from toolkit.tune_tracking import JournalTracker, journal_here

    if journal_here(settings.tracking, settings.driver_node):
        return JournalTracker()
    from toolkit.tracking import MlflowTracker

    return MlflowTracker(settings.mlflow_uri, settings.artifact_root, settings.experiment, settings.parent_run_id)


def run_trial(config: dict[str, Any], settings: TrialSettings) -> None:
    """One trial = `toolkit run` with the sampled overrides, in trials/<trial_id>/ (resumed if it exists)."""
    import torch
    from ray import tune

    from toolkit.engine import RUN_STATE, Engine
    from toolkit.recipe import apply_overrides, validate

    os.environ.update(settings.env)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    torch.set_num_threads(max(1, int(settings.cpus)))
    recipe = validate(apply_overrides(settings.tree, settings.overrides(config)), settings.source)
    trial_id = tune.get_context().get_trial_id()
    out = Path(settings.trials_dir) / trial_id
    tracker = trial_tracker(settings)
    reporter = TuneReporter(settings.metric, recipe.model.train.epochs, tracker, trial_id)
    # A retried or restored trial continues its own run: same folder, same MLflow run, from its last epoch.
    Engine(recipe, out, observers=[tracker, reporter], resume=(out / RUN_STATE).is_file()).run()


def _trainable(settings: TrialSettings, cfg: TuneConfig) -> Any:
    """An ordinary trial holds its CPUs/GPUs itself. A data-parallel one only waits: its Ray Train workers
    reserve `cpus`/`gpus` each, so the trial's own process must not take a share of them; it reserves a
    token 1 MiB of Ray's memory resource instead, because Ray Tune refuses a trial that asks for nothing."""
    from ray import tune

    if cfg.resources.workers > 1:
        from toolkit.tune_parallel import run_parallel_trial

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


def trial_dirname(trial: Any) -> str:
    """Ray's trial folder is named by the trial id alone, so results map back to trials/<trial_id>."""
    return str(trial.trial_id)


# ------------------------------------------------------------------------------------------ driver side
def search_space(cfg: TuneConfig) -> tuple[dict[str, Any], list[str]]:
    """[tune.space] -> Ray Tune domains. Choices holding lists/tables travel as TOML literal strings
    (Optuna's categorical distribution only takes scalars); returns the space and those keys."""
    from ray import tune

    space: dict[str, Any] = {}
    literal: list[str] = []
    for key, dist in cfg.space.items():
        if dist.type == "uniform":
            space[key] = tune.uniform(dist.low, dist.high)
        elif dist.type == "loguniform":
            space[key] = tune.loguniform(dist.low, dist.high)
        elif dist.type == "int":
            space[key] = tune.randint(int(dist.low), int(dist.high) + 1)  # type: ignore[arg-type]  # upper exclusive
        else:
            values = list(dist.values or [])
            if any(isinstance(v, (list, dict)) for v in values):
                literal.append(key)
                values = [toml_literal(v) for v in values]
            space[key] = tune.choice(values)
    return space, literal


def _initial_points(cfg: TuneConfig, literal: list[str]) -> list[dict[str, Any]]:
    return [{k: toml_literal(v) if k in literal else v for k, v in p.items()} for p in cfg.initial]


def _max_epochs(tree: dict[str, Any], cfg: TuneConfig) -> int:
    dist = cfg.space.get("train.epochs")
    upper = dist.upper() if dist is not None else None
    return int(upper) if upper is not None else int(tree["train"]["epochs"])


def _scheduler(cfg: TuneConfig, max_epochs: int, source: str) -> Any:
    if cfg.scheduler == "fifo":
        return None
    from ray.tune.schedulers import ASHAScheduler

    if cfg.grace_period >= max_epochs:
        raise RecipeError(f"ASHA needs grace_period ({cfg.grace_period}) below train.epochs ({max_epochs}); "
                          "lower it or use scheduler = \"fifo\"", file=source, section="tune", key="grace_period")
    # max_t above the last epoch: ASHA then never stops a trial merely for reaching the end.
    return ASHAScheduler(time_attr="epoch", max_t=max_epochs + 1, grace_period=cfg.grace_period,
                         reduction_factor=cfg.reduction_factor)


def _searcher(cfg: TuneConfig, seed: int, literal: list[str], limit: int | None = None) -> Any:
    """The searcher; random search holds `limit` trials at once itself (Tune ignores max_concurrent_trials
    for it, with a warning), Optuna is limited through TuneConfig."""
    points = _initial_points(cfg, literal) or None
    if cfg.search_alg == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        return OptunaSearch(points_to_evaluate=points, seed=seed)
    from ray.tune.search import BasicVariantGenerator

    return BasicVariantGenerator(points_to_evaluate=points, random_state=seed, max_concurrent=limit or 0)


class TrialTracking(Callback):
    """Ray Tune callback (driver side): logs journaling trials into their MLflow child runs as results
    arrive (at most once a second between results), and closes a child run that Ray stopped (ASHA) or
    lost (worker died) as KILLED / FAILED with the reason, where it would otherwise stay RUNNING."""

    def __init__(self, children: Any, console: bool = True) -> None:
        self.children, self.console = children, console
        self._last_sync = 0.0

    def _run_id(self, trial: Any) -> str | None:
        return self.children.sync(trial.trial_id) or (trial.last_result or {}).get("mlflow_run_id") or None

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        if time.monotonic() - self._last_sync < 1.0:
            return
        self._last_sync = time.monotonic()
        for trial in trials:
            if trial.status == "RUNNING":
                self.children.sync(trial.trial_id)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self.children.sync(trial.trial_id)
        if self.console:
            Console(stderr=True).print(f"[dim]trial {trial.trial_id} epoch {result.get('epoch')}[/]", highlight=False)

    def _close(self, trial: Any, status: str, reason: str) -> None:
        from toolkit.tune_parallel import release_workers

        release_workers(self.children.trials_dir / trial.trial_id)
        run_id = self._run_id(trial)
        if run_id:
            self.children.close_if_running(run_id, status, reason)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._close(trial, "KILLED", f"stopped early by the scheduler after epoch {(trial.last_result or {}).get('epoch')}")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._close(trial, "FAILED", "the trial's worker failed")


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


class Search:
    """Sets up, runs and summarises one search (or resumes one from its folder)."""

    def __init__(self, output_dir: Path, *, address: str | None = None, console: Console | None = None,
                 progress: bool = True) -> None:
        self.output_dir = Path(output_dir).resolve()
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.console = console or Console(stderr=True)
        self.progress = progress
        self._started_ray = False

    # ------------------------------------------------------------------------------------ set-up
    def start(self, recipe_path: str | Path, overrides: list[str], num_samples: int | None) -> SearchResult:
        from toolkit.recipe import load_recipe, validate

        if (self.output_dir / SEARCH_STATE).is_file():
            raise UserError(f"{self.output_dir} already holds a search; continue it with --resume or pick another "
                            "--output-dir")
        rec = load_recipe(recipe_path, overrides, check_tune=True)
        if rec.model.tune is None:
            raise RecipeError("missing: add a [tune] section with a [tune.space] table (see docs/tuning.md)",
                              file=str(recipe_path), section="tune")
        tree = rec.resolved()
        if num_samples is not None:
            if num_samples < 1:
                raise UserError(f"--num-samples must be at least 1 (got {num_samples})")
            tree["tune"]["num_samples"] = num_samples
            rec = validate(tree, rec.source, check_tune=True)
        cfg = rec.model.tune
        assert cfg is not None
        check_grace_period(cfg, rec.model.train.epochs, rec.source)
        labelled = self._has_labels(rec) if cfg.metric is None or cfg.metric in SUPERVISED else False
        metric = cfg.metric or ("acc" if labelled else LABEL_FREE_METRIC)
        if cfg.metric in SUPERVISED and not labelled:
            raise RecipeError(f"'{cfg.metric}' needs labels and the data set has none; use a label-free metric such "
                              f"as {LABEL_FREE_METRIC} (see docs/tuning.md)", file=rec.source, section="tune",
                              key="metric")
        mode = cfg.direction(metric)
        parent = self._parent_run(rec, metric, mode, cfg)
        state = {"parent_run_id": parent, "metric": metric, "mode": mode, "recipe": tree, "source": rec.source,
                 "status": "running", "mlflow_uri": self._uri}
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self._write_state(state)
        return self._run(state, resume=False)

    def resume(self) -> SearchResult:
        path = self.output_dir / SEARCH_STATE
        if not path.is_file():
            raise UserError(f"--resume: {self.output_dir} holds no search ({SEARCH_STATE} missing); pass the "
                            "--output-dir of the interrupted search")
        state = json.loads(path.read_text())
        return self._run(state, resume=True)

    @staticmethod
    def _has_labels(rec: Any) -> bool:
        from toolkit.data.registry import labelled_without_loading, load_data

        cfg = rec.model
        if labelled_without_loading(cfg.data.dataset):
            return True
        splits = load_data(cfg.data, cfg.experiment.protocol, cfg.experiment.seed)
        return (splits.test if splits.test is not None else splits.train).labels is not None

    def _parent_run(self, rec: Any, metric: str, mode: str, cfg: TuneConfig) -> str:
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        from toolkit.tracking import tracking_uri

        self._uri, self._artifact_root = tracking_uri()
        try:
            client = MlflowClient(tracking_uri=self._uri)
            name = rec.experiment.name
            exp = client.get_experiment_by_name(name)
            exp_id = exp.experiment_id if exp else client.create_experiment(name, artifact_location=self._artifact_root)
            tags = {"toolkit.kind": "tune", "tune.metric": metric, "tune.mode": mode,
                    "tune.output_dir": str(self.output_dir), "recipe_file": rec.source}
            run_id = client.create_run(exp_id, run_name=f"tune-{name}", tags=tags).info.run_id
            params = [Param(f"tune.space.{k}", d.describe()) for k, d in cfg.space.items()]
            params += [Param(f"tune.{k}", str(getattr(cfg, k))) for k in ("num_samples", "search_alg", "scheduler")]
            client.log_batch(run_id, params=params)
        except Exception as exc:  # noqa: BLE001 - any store failure means we cannot track
            raise UserError(f"MLflow tracking store {self._uri} is unusable: {str(exc).splitlines()[0][:200]}") from None
        return run_id

    def _write_state(self, state: dict[str, Any]) -> None:
        tmp = self.output_dir / (SEARCH_STATE + ".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.output_dir / SEARCH_STATE)

    def _ray_init(self) -> None:
        import logging

        import ray

        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: no Ray tables between our lines
        try:
            import optuna

            optuna.logging.set_verbosity(optuna.logging.WARNING)
        except ImportError:
            pass
        if ray.is_initialized():
            return
        if self.address:
            _probe_address(self.address)
            try:
                ray.init(address=self.address, logging_level=logging.WARNING, log_to_driver=False)
            except (ConnectionError, RuntimeError) as exc:
                raise _cluster_error(self.address, _why_unreachable(exc)) from None
        else:
            ray.init(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
        self._started_ray = True

    # ------------------------------------------------------------------------------------- search
    def _settings(self, state: dict[str, Any], cfg: TuneConfig, literal: list[str]) -> TrialSettings:
        import ray

        from toolkit.tracking import tracking_uri

        uri = state["mlflow_uri"]
        artifact_root = tracking_uri()[1] if uri == tracking_uri()[0] else None
        tree = {k: v for k, v in state["recipe"].items() if k != "tune"}
        env = {k: v for k, v in os.environ.items() if k in ("TOOLKIT_CACHE_DIR",)}
        return TrialSettings(tree, state["source"], str(self.output_dir / TRIALS_DIR), state["metric"], uri,
                             artifact_root, tree["experiment"]["name"], state["parent_run_id"], cfg.resources.cpus,
                             literal, env, cfg.resources.workers, cfg.resources.gpus, cfg.tracking,
                             ray.get_runtime_context().get_node_id())

    def _children(self, settings: TrialSettings) -> Any:
        from toolkit.tune_tracking import ChildRuns

        return ChildRuns(settings.mlflow_uri, settings.artifact_root, settings.experiment, settings.parent_run_id,
                         settings.trials_dir)

    def _run(self, state: dict[str, Any], resume: bool) -> SearchResult:
        from ray import tune

        from toolkit.recipe import validate

        start = time.perf_counter()
        rec = validate(state["recipe"], state["source"])
        cfg = rec.model.tune
        assert cfg is not None
        space, literal = search_space(cfg)
        self._ray_init()
        try:
            settings = self._settings(state, cfg, literal)
            self._children_of_search = self._children(settings)
            trainable = _trainable(settings, cfg)
            path = str(self.output_dir / RAY_DIR)
            if resume:
                if not tune.Tuner.can_restore(path):
                    raise UserError(f"--resume: {path} holds no Ray Tune state to continue")
                self._parent_status(state, "RUNNING")
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
                   state: dict[str, Any], source: str) -> Any:
        from ray import tune

        seed = cfg.seed if cfg.seed is not None else int(state["recipe"]["experiment"]["seed"])
        limit = cfg.max_concurrent or _parallel_concurrency(cfg)
        tune_cfg = tune.TuneConfig(metric=state["metric"], mode=state["mode"], num_samples=cfg.num_samples,
                                   search_alg=_searcher(cfg, seed, literal, limit),
                                   scheduler=_scheduler(cfg, _max_epochs(state["recipe"], cfg), source),
                                   max_concurrent_trials=limit if cfg.search_alg == "optuna" else None,
                                   trial_dirname_creator=trial_dirname,
                                   reuse_actors=cfg.resources.workers <= 1)  # see _reuse_actors
        run_cfg = tune.RunConfig(name=RAY_DIR, storage_path=str(self.output_dir), verbose=0,
                                 failure_config=tune.FailureConfig(max_failures=cfg.max_failures),
                                 callbacks=[TrialTracking(self._children_of_search, self.progress)])
        return tune.Tuner(trainable, param_space=space, tune_config=tune_cfg, run_config=run_cfg)

    # ------------------------------------------------------------------------------------- finish
    def _rows(self, grid: Any, literal: list[str], state: dict[str, Any]) -> list[dict[str, Any]]:
        rows = []
        # Ray's ResultGrid holds no trial status; its experiment analysis has the trials, matched here by id
        # (the trial folder's name, see trial_dirname) rather than by position.
        trials = list(getattr(getattr(grid, "_experiment_analysis", None), "trials", None) or [])
        ray_status_of = {str(t.trial_id): t.status for t in trials}
        for result in grid:
            metrics = result.metrics or {}
            config = dict(result.config or {})
            error = result.error
            epochs = int(config.get("train.epochs", state["recipe"]["train"]["epochs"]))
            trial_id = Path(result.path).name
            ray_status = ray_status_of.get(trial_id, "TERMINATED" if metrics.get("done") else "")
            if error is not None or ray_status == "ERROR":
                status = "failed"
            elif ray_status != "TERMINATED" or metrics.get("epoch") is None:  # a finished trial reported its epochs
                status = "unfinished"
            elif int(metrics["epoch"]) < epochs:
                status = "stopped"
            else:
                status = "finished"
            rows.append({"trial_id": trial_id, "status": status, "config": config,
                         "metric": metrics.get(state["metric"]), "epoch": metrics.get("epoch"),
                         "mlflow_run_id": metrics.get("mlflow_run_id") or self._children_of_search.run_id(trial_id),
                         "error": _one_line(error) if error is not None else None})
        sign = -1.0 if state["mode"] == "max" else 1.0
        rows.sort(key=lambda r: (r["metric"] is None, sign * r["metric"] if r["metric"] is not None else 0.0))
        return rows

    def _finish(self, state: dict[str, Any], cfg: TuneConfig, grid: Any, literal: list[str],
                seconds: float) -> SearchResult:
        rows = self._rows(grid, literal, state)
        done = sum(r["status"] in ("finished", "stopped", "failed") for r in rows)
        interrupted = done < cfg.num_samples
        # Trials that ran every epoch compete on equal budgets; an ASHA-stopped trial wins only if none did.
        best = next((r for r in rows if r["metric"] is not None and r["status"] == "finished"), None) or \
            next((r for r in rows if r["metric"] is not None and r["status"] == "stopped"), None)
        (self.output_dir / "trials.json").write_text(json.dumps(rows, indent=2, default=str))
        if best is not None:
            self._write_best(state, best, literal)
        state["status"] = "interrupted" if interrupted else "finished"
        self._write_state(state)
        self._log_parent(state, best, interrupted)
        return SearchResult(self.output_dir, state["metric"], state["mode"], state["parent_run_id"], rows, best,
                            interrupted, round(seconds, 3))

    def _write_best(self, state: dict[str, Any], best: dict[str, Any], literal: list[str]) -> None:
        from toolkit.recipe import apply_overrides, validate

        tree = {k: v for k, v in state["recipe"].items() if k != "tune"}
        settings = TrialSettings(tree, state["source"], "", state["metric"], "", None, "", "", 1.0, literal)
        rec = validate(apply_overrides(tree, settings.overrides(best["config"])), state["source"])
        header = (f"# Best trial {best['trial_id']} of the search in {self.output_dir}\n"
                  f"# {state['metric']} = {best['metric']} ({state['mode']}); searched: "
                  f"{', '.join(settings.overrides(best['config']))}\n\n")
        (self.output_dir / BEST_RECIPE).write_text(header + rec.to_toml())

    def _parent_status(self, state: dict[str, Any], status: str) -> None:
        from mlflow.tracking import MlflowClient

        MlflowClient(tracking_uri=state["mlflow_uri"]).update_run(state["parent_run_id"], status=status)

    def _log_parent(self, state: dict[str, Any], best: dict[str, Any] | None, interrupted: bool) -> None:
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=state["mlflow_uri"])
        run_id = state["parent_run_id"]
        for name in (BEST_RECIPE, "trials.json"):
            if (self.output_dir / name).is_file():
                client.log_artifact(run_id, str(self.output_dir / name))
        if best is not None:
            logged = {p for p in client.get_run(run_id).data.params}
            params = [Param(f"best.{k}", str(v)[:6000]) for k, v in best["config"].items() if f"best.{k}" not in logged]
            client.log_batch(run_id, metrics=[Metric(f"best_{state['metric']}", float(best["metric"]),
                                                     int(time.time() * 1000), 0)],
                             params=params,
                             tags=[RunTag("best.trial_id", best["trial_id"]),
                                   RunTag("best.mlflow_run_id", str(best["mlflow_run_id"])),
                                   *[RunTag(f"best.{k}", str(v)[:5000]) for k, v in best["config"].items()]])
        client.set_terminated(run_id, status="KILLED" if interrupted else "FINISHED")


def _probe_address(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds when nothing listens at HOST:PORT (ray.init itself retries for minutes)."""
    import socket

    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        return  # "auto" or another form Ray resolves itself
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return
    except OSError as exc:
        raise _cluster_error(address, f"nothing answers: {exc.strerror or exc}") from None


def _cluster_error(address: str, why: str) -> UserError:
    return UserError(f"cannot join the Ray cluster at {address} ({why}); start it with `ray start --head`, fix "
                     "--address / RAY_ADDRESS, or leave both unset to run on a local Ray instance")


def _why_unreachable(exc: BaseException) -> str:
    """One clause for a failed ray.init(address=...): the token case needs its own hint."""
    text = " ".join(str(e) for e in (exc, exc.__cause__) if e is not None)
    if "InvalidAuthToken" in text or "Authentication token" in text:
        return ("the cluster wants an authentication token: set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (or "
                "RAY_AUTH_TOKEN_PATH) as for the cluster's nodes")
    return str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__


def _one_line(error: BaseException) -> str:
    """The root cause of a trial's error as one line (Ray wraps it in its own exception types)."""
    cause: BaseException = error
    while cause.__cause__ is not None:
        cause = cause.__cause__
    text = str(cause).strip().splitlines()
    lines = [line for line in text if line.strip()]
    return f"{type(cause).__name__}: {lines[-1] if lines else ''}"[:300]


def results_table(result: SearchResult, top: int = 10) -> Table:
    """The best `top` trials, best first, with their sampled values."""
    keys = sorted({k for r in result.rows for k in r["config"]})
    table = Table(title=f"toolkit tune: best trials by {result.metric} ({result.mode})")
    for col in ("trial", "status", *keys, result.metric, "epoch"):
        table.add_column(col, no_wrap=True)
    for r in result.rows[:top]:
        metric = f"{r['metric']:.4f}" if isinstance(r["metric"], float) else "-"
        cells = [_fmt(r["config"].get(k)) for k in keys]
        status = r["status"] if r["status"] != "failed" else f"[red]failed[/]"
        table.add_row(r["trial_id"], status, *cells, metric, str(r["epoch"] if r["epoch"] is not None else "-"))
    return table


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)

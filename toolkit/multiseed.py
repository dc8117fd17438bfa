"""Multi-seed runs: one recipe once per seed, grouped under an MLflow parent run, with mean and spread.

Stability across seeds is a result in itself (DRC's claim), so `toolkit run RECIPE --seeds 0,1,2` runs
the recipe per seed (each its own MLflow run and folder DIR/seed-<s>/), then reports every numeric
metric's mean and sample standard deviation (ddof=1) in a table, in DIR/seeds_summary.json and on the
parent run (acc_mean, acc_std, ...). Works for any recipe: the seed is just `experiment.seed`.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from rich.table import Table

from toolkit.errors import UserError
from toolkit.events import Observer

SEEDS_STATE = "seeds_state.json"
SEEDS_SUMMARY = "seeds_summary.json"
#: Summary numbers that describe the run rather than measure it (not aggregated).
NOT_METRICS = frozenset({"seed", "num_clusters", "n_train", "n_eval", "epochs"})


def parse_seeds(text: str) -> list[int]:
    """'0,1,2' or '0-4' (or a mix) -> distinct non-negative seeds in the given order."""
    seeds: list[int] = []
    try:
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            lo, sep, hi = part.partition("-")
            values = range(int(lo), int(hi) + 1) if sep else [int(part)]
            seeds += [s for s in values if s not in seeds]
    except ValueError:
        raise UserError(f"--seeds {text!r}: expected comma-separated integers or ranges, e.g. 0,1,2 or 0-4") from None
    if not seeds or any(s < 0 for s in seeds):
        raise UserError(f"--seeds {text!r}: give at least one seed, all >= 0")
    return seeds


def seed_dir(output_dir: Path, seed: int) -> Path:
    return output_dir / f"seed-{seed}"


def aggregate(summaries: dict[int, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per metric (numeric in every seed's summary): per-seed values, mean, sample std, min, max."""
    if not summaries:
        return {}
    first = next(iter(summaries.values()))
    out: dict[str, dict[str, Any]] = {}
    for key in first:
        values = [s.get(key) for s in summaries.values()]
        if key in NOT_METRICS or not all(_is_number(v) for v in values):
            continue
        vals = [float(v) for v in values]
        out[key] = {"values": {str(seed): v for seed, v in zip(summaries, vals)}, "mean": statistics.fmean(vals),
                    "std": statistics.stdev(vals) if len(vals) > 1 else None, "min": min(vals), "max": max(vals)}
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))


@dataclass
class SeedsResult:
    recipe: str
    seeds: list[int]
    summaries: dict[int, dict[str, Any]]
    metrics: dict[str, dict[str, Any]]
    parent_run_id: str | None
    output_dir: Path

    def to_json(self) -> dict[str, Any]:
        return {"recipe": self.recipe, "seeds": self.seeds, "parent_run_id": self.parent_run_id, "std": "sample (ddof=1)",
                "metrics": self.metrics,
                "per_seed": {str(s): {"output_dir": str(seed_dir(self.output_dir, s)),
                                      "mlflow_run_id": summ.get("mlflow_run_id"),
                                      **{k: summ.get(k) for k in self.metrics}} for s, summ in self.summaries.items()}}


class ParentRun:
    """The MLflow run that groups the seeds' runs (children carry its id as mlflow.parentRunId)."""

    def __init__(self, experiment: str, run_name: str, tags: dict[str, str], run_id: str | None = None,
                 store: tuple[str, str | None] | None = None) -> None:
        from mlflow.tracking import MlflowClient

        from toolkit.tracking import tracking_uri

        uri, artifact_root = store or tracking_uri()
        try:
            self.client = MlflowClient(tracking_uri=uri)
            if run_id is not None:
                self.run_id = run_id
                self.client.update_run(run_id, status="RUNNING")
                return
            exp = self.client.get_experiment_by_name(experiment)
            exp_id = exp.experiment_id if exp else self.client.create_experiment(experiment, artifact_location=artifact_root)
            self.run_id = self.client.create_run(exp_id, run_name=run_name, tags=tags).info.run_id
        except Exception as exc:  # noqa: BLE001 - any store failure means we cannot track
            raise UserError(f"MLflow tracking store {uri} is unusable: {str(exc).splitlines()[0][:200]}") from None

    def finish(self, metrics: dict[str, dict[str, Any]], summary_file: Path) -> None:
        from mlflow.entities import Metric

        items = []
        for name, agg in metrics.items():
            items.append(Metric(f"{name}_mean", agg["mean"], 0, 0))
            if agg["std"] is not None:
                items.append(Metric(f"{name}_std", agg["std"], 0, 0))
        for i in range(0, len(items), 1000):
            self.client.log_batch(self.run_id, metrics=items[i:i + 1000])
        self.client.log_artifact(self.run_id, str(summary_file))
        self.client.set_terminated(self.run_id, status="FINISHED")

    def fail(self, error: BaseException) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag("error", f"{type(error).__name__}: {error}"[:5000])])
        self.client.set_terminated(self.run_id, status="KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED")


def _seed_summary(folder: Path) -> dict[str, Any] | None:
    """A finished seed's summary (skipped on --resume), else None."""
    state, summary = folder / "run_state.json", folder / "summary.json"
    if state.is_file() and summary.is_file() and json.loads(state.read_text()).get("status") == "finished":
        return json.loads(summary.read_text())
    return None


def run_seeds(recipe_path: Path, overrides: list[str], seeds: list[int], output_dir: Path, *, device: str | None,
              resume: bool, observers: Callable[[str], list[Observer]],
              store: tuple[str, str | None] | None = None) -> SeedsResult:
    """Run the recipe once per seed; `observers(parent_run_id)` makes each seed's observers (incl. its tracker).

    `store` is the (tracking URI, artifact root) of the parent run (default: `tracking_uri()`); the seeds'
    trackers should log to the same one.

    With `resume`, finished seeds are read back, interrupted ones continue from their last epoch and
    the rest start; the parent run is the one recorded in DIR/seeds_state.json.
    """
    from toolkit.engine import RUN_STATE, Engine
    from toolkit.recipe import load_recipe

    recipes = {s: load_recipe(recipe_path, [*overrides, f"experiment.seed={s}"]) for s in seeds}  # fail before MLflow
    first = recipes[seeds[0]]
    state_file = output_dir / SEEDS_STATE
    parent_id = None
    if resume:
        if not state_file.is_file():
            raise UserError(f"--resume --seeds: {output_dir} holds no earlier multi-seed run ({SEEDS_STATE} missing)")
        parent_id = json.loads(state_file.read_text()).get("parent_run_id")
    tags = {"multiseed": "true", "seeds": ",".join(map(str, seeds)), "recipe_file": first.source,
            "dataset": first.model.data.dataset, "protocol": first.experiment.protocol}
    parent = ParentRun(first.experiment.name, f"{first.experiment.name}-seeds-{tags['seeds']}", tags, parent_id,
                       store)
    output_dir.mkdir(parents=True, exist_ok=True)
    state_file.write_text(json.dumps({"parent_run_id": parent.run_id, "seeds": seeds}, indent=2))
    summaries: dict[int, dict[str, Any]] = {}
    try:
        for seed in seeds:
            folder = seed_dir(output_dir, seed)
            done = _seed_summary(folder) if resume else None
            if done is None:
                again = resume and (folder / RUN_STATE).is_file()
                done = Engine(recipes[seed], folder, device=device, observers=observers(parent.run_id),
                              resume=again).run()
            summaries[seed] = done
    except BaseException as exc:
        parent.fail(exc)
        raise
    result = SeedsResult(first.source, seeds, summaries, aggregate(summaries), parent.run_id, output_dir)
    summary_file = output_dir / SEEDS_SUMMARY
    summary_file.write_text(json.dumps(result.to_json(), indent=2))
    parent.finish(result.metrics, summary_file)
    return result


def seeds_table(result: SeedsResult) -> Table:
    """Mean ± sample std of every metric, with each seed's value."""
    table = Table(title=f"{Path(result.recipe).name} | seeds {', '.join(map(str, result.seeds))} | mean and std (ddof=1)")
    table.add_column("metric")
    for col in ("mean", "std", *(f"seed {s}" for s in result.seeds)):
        table.add_column(col, justify="right")
    for name, agg in result.metrics.items():
        std = "-" if agg["std"] is None else f"{agg['std']:.4f}"
        table.add_row(name, f"{agg['mean']:.4f}", std, *(f"{agg['values'][str(s)]:.4f}" for s in result.seeds))
    table.caption = f"MLflow parent run {result.parent_run_id}; per-seed runs in {result.output_dir}/seed-<s>/"
    return table

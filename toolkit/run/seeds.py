"""Multi-seed runs: one recipe once per seed, grouped under an MLflow parent run, with mean and spread.

Stability across seeds is a result in itself (DRC's claim), so `toolkit run RECIPE --seeds 0,1,2` runs
the recipe per seed (each its own MLflow run and folder DIR/seed-<s>/), then reports every numeric
metric's mean and sample standard deviation (ddof=1) in a table, in DIR/seeds_summary.json and on the
parent run, under the children's own metric names (acc = the mean, acc_std = the spread), so a parent sits in
the same column and chart as its seeds. Works for any recipe: the seed is just `experiment.seed`.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

from toolkit.errors import UserError
from toolkit.run.events import Observer
from toolkit.run.folder import RunFolder
from toolkit.run.interrupt import deferred

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
                "per_seed": {str(s): {"output_dir": str(RunFolder(self.output_dir).seed(s).root),
                                      "mlflow_run_id": summ.get("mlflow_run_id"),
                                      **{k: summ.get(k) for k in self.metrics}} for s, summ in self.summaries.items()}}


class Parent(Protocol):
    """The run that groups the seeds' runs (made by the caller: MLflow's lives in toolkit.track.parent)."""

    run_id: str

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None: ...
    def log_params(self, params: dict[str, str]) -> None: ...
    def log_artifact(self, path: str | Path) -> None: ...
    def finish(self, status: str = "FINISHED") -> None: ...
    def fail(self, error: BaseException) -> None: ...


#: Makes (or, given the recorded run id, reopens) the parent: (experiment, run name, tags, run id or None).
OpenParent = Callable[[str, str, dict[str, str], "str | None"], Parent]


def parent_params(recipe: Any, seeds: list[int]) -> dict[str, str]:
    """The recipe keys the seeds share (their own seed aside) and the list of seeds."""
    from toolkit.recipe.used_keys import used_params

    shared = {k: v for k, v in used_params(recipe.flat_params()).items() if k != "experiment.seed"}
    return {**shared, "seeds": ",".join(map(str, seeds))}


def parent_name(experiment: str, seeds: list[int], overrides: list[str]) -> str:
    """`<experiment>-seeds-0,1,2`, then the overrides in short as the children's names carry them."""
    from toolkit.recipe.names import override_summary

    summary = override_summary(overrides)
    base = f"{experiment}-seeds-{','.join(map(str, seeds))}"
    return f"{base} {summary}" if summary else base


def run_seeds(recipe_path: Path, overrides: list[str], seeds: list[int], output_dir: Path, *, device: str | None,
              resume: bool, observers: Callable[[str], list[Observer]], open_parent: OpenParent) -> SeedsResult:
    """Run the recipe once per seed; `observers(parent_run_id)` makes each seed's observers (incl. its tracker),
    `open_parent` the run that groups them (its trackers should log to the same store).

    With `resume`, finished seeds are read back, interrupted ones continue from their last epoch and
    the rest start; the parent run is the one recorded in DIR/seeds_state.json.
    """
    from toolkit.recipe.loading import load_recipe
    from toolkit.run.engine import Engine

    recipes = {s: load_recipe(recipe_path, [*overrides, f"experiment.seed={s}"]) for s in seeds}  # fail before MLflow
    first = recipes[seeds[0]]
    root = RunFolder(output_dir)
    state_file = root.seeds_state
    parent_id = None
    if resume:
        if not state_file.is_file():
            raise UserError(f"--resume --seeds: {output_dir} holds no earlier multi-seed run ({state_file.name} missing)")
        parent_id = json.loads(state_file.read_text()).get("parent_run_id")
    tags = {"multiseed": "true", "seeds": ",".join(map(str, seeds)), "recipe_file": first.source,
            "dataset": first.config.data.dataset, "protocol": first.experiment.protocol}
    if first.experiment.description:
        tags["mlflow.note.content"] = first.experiment.description
    with deferred(hold=True):  # SIGTERM / Ctrl-C: recorded by the first seed's run, and so on the parent
        parent = open_parent(first.experiment.name, parent_name(first.experiment.name, seeds, overrides), tags,
                             parent_id)
        parent.log_params(parent_params(first, seeds))
        output_dir.mkdir(parents=True, exist_ok=True)
        state_file.write_text(json.dumps({"parent_run_id": parent.run_id, "seeds": seeds}, indent=2))
    summaries: dict[int, dict[str, Any]] = {}
    try:
        for seed in seeds:
            folder = root.seed(seed)
            if resume and folder.is_finished():  # read back, not run again
                done = json.loads(folder.summary.read_text())
            else:
                again = resume and folder.state.is_file()
                done = Engine(recipes[seed], folder.root, device=device, observers=observers(parent.run_id),
                              resume=again).run()
            summaries[seed] = done
    except BaseException as exc:
        parent.fail(exc)
        raise
    with deferred(hold=True):  # every seed ran: a signal now lets the parent be finished, not cut off
        result = SeedsResult(first.source, seeds, summaries, aggregate(summaries), parent.run_id, output_dir)
        root.seeds_summary.write_text(json.dumps(result.to_json(), indent=2))
        means = {name: agg["mean"] for name, agg in result.metrics.items()}
        spreads = {f"{name}_std": agg["std"] for name, agg in result.metrics.items() if agg["std"] is not None}
        parent.log_metrics({**means, **spreads})
        parent.log_artifact(root.seeds_summary)
        parent.finish()
    return result

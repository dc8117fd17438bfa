"""`toolkit report`: the paper-style results table, read back from the MLflow store.

Every run already carries what a results table needs: its method (the run name without the seed), its data set
(tag `dataset`), whether ground truth chose anything (tag `oracle`), its final ACC, NMI, ARI and ECE (latest
metric values) and its wall time (start and end of the run). This module collects finished runs, groups them
(by default per method and data set), and reduces each group to mean and sample standard deviation over its
runs (the seeds). Parents of `--seeds` and of searches are left out (their children are the runs), and so are
search trials unless asked for: one row per trial would not be a results table.
"""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass, field
from typing import Any

from toolkit.errors import UserError

#: Columns of the table: (metric key, header, True when larger is better). `seconds` is the run's wall time.
COLUMNS: tuple[tuple[str, str, bool], ...] = (("acc", "ACC", True), ("nmi", "NMI", True), ("ari", "ARI", True),
                                              ("ece", "ECE", False), ("seconds", "time (s)", False))
#: Group keys with a meaning of their own; any other key is looked up in the run's tags, then its params.
BUILT_IN_KEYS = ("method", "dataset", "seed")
_SEED = re.compile(r"^(?P<name>.+)-s(?P<seed>\d+)(?: (?P<rest>.*))?$")


@dataclass
class RunFacts:
    """What the table needs from one MLflow run."""

    run_id: str
    method: str
    seed: str
    tags: dict[str, str]
    params: dict[str, str]
    metrics: dict[str, float]
    oracle: bool

    def key(self, name: str) -> str:
        if name == "method":
            return self.method
        if name == "seed":
            return self.seed
        if name == "dataset":
            return self.tags.get("dataset", "?")
        for source in (self.tags, self.params):
            if name in source:
                return source[name]
        return "-"


@dataclass
class Row:
    """One line of the table: a group of runs and each column's mean and std over them."""

    keys: tuple[str, ...]
    runs: list[RunFacts]
    mean: dict[str, float] = field(default_factory=dict)
    std: dict[str, float | None] = field(default_factory=dict)


@dataclass
class Report:
    by: tuple[str, ...]
    label_free: list[Row]
    oracle: list[Row]
    left_out: dict[str, int]  # why -> how many runs

    def sections(self) -> list[tuple[str, list[Row]]]:
        """(title, rows) of the non-empty sections; oracle runs never compete with label-free ones."""
        named = [("label-free", self.label_free), ("oracle (chosen with ground truth)", self.oracle)]
        return [(title, rows) for title, rows in named if rows]

    def best(self, rows: list[Row]) -> dict[str, float]:
        """Per column, the best mean among `rows` (only where at least two rows have a value)."""
        out: dict[str, float] = {}
        for key, _, larger in COLUMNS:
            values = [r.mean[key] for r in rows if key in r.mean]
            if len(values) >= 2:
                out[key] = max(values) if larger else min(values)
        return out


def method_and_seed(run_name: str) -> tuple[str, str]:
    """'cdc_digits-s2 lr=0.01' -> ('cdc_digits lr=0.01', '2'): the run name (see records.run_name) less its seed."""
    found = _SEED.match(run_name or "")
    if not found:
        return run_name or "?", "-"
    rest = found.group("rest")
    return (f"{found.group('name')} {rest}" if rest else found.group("name")), found.group("seed")


def facts_of(run: Any) -> RunFacts:
    """RunFacts of an MLflow Run: latest metric values, wall time from the run's start and end."""
    method, seed = method_and_seed(run.info.run_name or run.data.tags.get("mlflow.runName", ""))
    metrics = {k: float(v) for k, v in run.data.metrics.items() if math.isfinite(float(v))}
    if run.info.end_time and run.info.start_time:
        metrics["seconds"] = (run.info.end_time - run.info.start_time) / 1000.0
    return RunFacts(run.info.run_id, method, seed, dict(run.data.tags), dict(run.data.params), metrics,
                    run.data.tags.get("oracle", "false").lower() == "true")


def collect(client: Any, targets: list[str], *, trials: bool = False) -> tuple[list[RunFacts], dict[str, int]]:
    """The finished leaf runs named by `targets` (experiment names or ids, run ids; a parent run stands for its
    children; nothing = every experiment), and how many runs were left out and why."""
    runs = _runs_of(client, targets)
    parents = {r.data.tags.get("mlflow.parentRunId") for r in runs} - {None}
    left_out: dict[str, int] = {}
    kept = []
    for run in runs:
        why = None
        if run.info.run_id in parents:
            why = "parent runs (seeds, searches)"
        elif run.info.status != "FINISHED":
            why = f"runs not finished ({run.info.status.lower()})"
        elif "tune.trial_id" in run.data.tags and not trials:
            why = "search trials (--trials includes them)"
        if why:
            left_out[why] = left_out.get(why, 0) + 1
        else:
            kept.append(facts_of(run))
    return kept, left_out


def _runs_of(client: Any, targets: list[str]) -> list[Any]:
    if not targets:
        ids = [e.experiment_id for e in client.search_experiments()]
        return _search(client, ids) if ids else []
    found: dict[str, Any] = {}
    for target in targets:
        exp = _experiment(client, target)
        if exp is not None:
            found.update({r.info.run_id: r for r in _search(client, [exp.experiment_id])})
            continue
        try:
            run = client.get_run(target)
        except Exception:  # noqa: BLE001 - MLflow raises its own types for unknown ids
            raise UserError(f"toolkit report: '{target}' is neither an experiment nor a run id in this store "
                            f"(`toolkit ui` lists the experiments)") from None
        children = _search(client, [run.info.experiment_id], f"tags.mlflow.parentRunId = '{target}'")
        found.update({r.info.run_id: r for r in (children or [run])})
    return list(found.values())


def _experiment(client: Any, target: str) -> Any:
    exp = client.get_experiment_by_name(target)
    if exp is None and target.isdigit():
        try:
            exp = client.get_experiment(target)
        except Exception:  # noqa: BLE001
            exp = None
    return exp


def _search(client: Any, experiment_ids: list[str], query: str = "") -> list[Any]:
    """Every run of the experiments (page by page), active ones only."""
    out, token = [], None
    while True:
        page = client.search_runs(experiment_ids, filter_string=query, max_results=1000, page_token=token)
        out += list(page)
        token = getattr(page, "token", None)
        if not token:
            return out


def build(runs: list[RunFacts], by: tuple[str, ...], left_out: dict[str, int]) -> Report:
    """Group `runs` by the keys `by` and reduce each column to mean and sample std (ddof=1) over the group."""
    if not by:
        raise UserError("toolkit report --by: name at least one key, e.g. --by method,dataset")
    groups: dict[tuple[bool, tuple[str, ...]], list[RunFacts]] = {}
    for run in runs:
        groups.setdefault((run.oracle, tuple(run.key(k) for k in by)), []).append(run)
    label_free, oracle = [], []
    for (is_oracle, keys), members in sorted(groups.items(), key=lambda item: item[0]):
        row = Row(keys, members)
        for key, _, _ in COLUMNS:
            values = [m.metrics[key] for m in members if key in m.metrics]
            if values:
                row.mean[key] = statistics.fmean(values)
                row.std[key] = statistics.stdev(values) if len(values) > 1 else None
        (oracle if is_oracle else label_free).append(row)
    return Report(tuple(by), label_free, oracle, left_out)


def parse_by(text: str) -> tuple[str, ...]:
    """'method,dataset' -> ('method', 'dataset')."""
    return tuple(part.strip() for part in text.split(",") if part.strip())

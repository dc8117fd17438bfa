"""The offline multi-data-set suite: every method's general recipe on real data nobody tuned it for.

    python benchmarks/suite.py [--methods baseline cdc ...] [--datasets digits digits_lt10 ...]
                               [--seeds 0-2 | --quick] [--set key=value ...] [--no-write]

For each data set it runs k-means, spectral and agglomerative clustering on the raw pixels and each
method's general recipe (`recipes/<method>.toml`; a method without one runs its `<method>_digits.toml`,
marked in the table), once per seed, and prints mean ± std of ACC, NMI, ARI, ECE
and wall seconds with each method's ACC as a ratio of the best classic baseline on that data set. The table
is appended to benchmarks/RESULTS.md with the date and machine unless --no-write. A failed run is a row
saying so, never a silent gap. Labels are used for the scores only.

Runs go `--jobs` at a time (default: one per CPU core), each worker a process with cores/jobs torch
threads: on 2 cores two 1-thread runs finish together in the time one takes alone, about 1.5x the throughput
of one 2-thread run (measured 2026-12-07, RESULTS.md). A data set's methods for one seed run in order in
one worker, so the later ones reuse the SimCLR backbone the first pretrained.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]

#: Data set name -> the `[data]` settings that make it (all offline, real, labelled).
DATASETS: dict[str, list[str]] = {
    "digits": ["data.dataset=digits"],
    "digits_lt10": ["data.dataset=digits", "data.long_tail=10"],
    "digits_lt50": ["data.dataset=digits", "data.long_tail=50"],
    "digits_color": ["data.dataset=digits_color"],
    "photo_patches": ["data.dataset=photo_patches"],
    "lfw_subset": ["data.dataset=lfw_subset"],
}
METHODS = ["baseline", "cdc", "spice", "drc", "gcc"]
#: (method, data set) pairs the suite leaves out unless --all, with the measured reason (a row says so).
SKIPPED: dict[tuple[str, str], str] = {
    (method, dataset): reason
    for dataset in ("digits_color", "photo_patches")
    for method, reason in {
        "gcc": "conditional DDPM on 32x32 RGB: the tiny U-Net costs ~16x its 8x8 digits time (~180 s of "
               "generator training there), GPU work; run with --all",
        "cdc": "about 27 min per run on 32x32 RGB on 2 CPU cores (first pass, benchmarks/RESULTS.md); "
               "run with --all",
    }.items()
}
METRICS = ("acc", "nmi", "ari", "ece", "seconds")


@dataclass
class Row:
    """One method on one data set: a list of values per metric (one per seed) and any failures."""

    dataset: str
    method: str
    values: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in METRICS})
    failures: list[str] = field(default_factory=list)
    classic: bool = False
    skipped: str = ""

    def add(self, scores: dict[str, float | None]) -> None:
        for m in METRICS:
            value = scores.get(m)
            if value is not None and np.isfinite(value):
                self.values[m].append(float(value))

    def mean(self, metric: str) -> float | None:
        vals = self.values[metric]
        return statistics.fmean(vals) if vals else None

    def cell(self, metric: str) -> str:
        if self.skipped:
            return f"not run: {self.skipped}" if metric == "acc" else ""
        vals = self.values[metric]
        if not vals:
            return "-"
        if metric == "seconds":
            return f"{statistics.fmean(vals):.0f}"
        spread = f" ± {statistics.stdev(vals):.3f}" if len(vals) > 1 else ""
        return f"{statistics.fmean(vals):.3f}{spread}"


def load_pixels(dataset: str) -> tuple[np.ndarray, np.ndarray, int]:
    """The data set exactly as the runs see it (transductive), as flat [0, 1] pixels, labels and K."""
    from toolkit.data.config import DataConfig
    from toolkit.data.registry import load_data

    settings = {key.split(".", 1)[1]: value for key, value in (s.split("=", 1) for s in DATASETS[dataset])}
    data = load_data(DataConfig(**settings), "transductive", seed=0).train
    assert data.labels is not None
    x = data.images.reshape(len(data), -1).float().numpy() / 255.0
    return x, data.labels, int(data.labels.max()) + 1


def classic_rows(dataset: str, seeds: list[int]) -> list[Row]:
    """k-means, spectral (kNN graph) and agglomerative (Ward) on the raw pixels, per seed."""
    from sklearn.cluster import AgglomerativeClustering, KMeans, SpectralClustering

    from toolkit.metrics import ari, cluster_acc, nmi

    x, y, k = load_pixels(dataset)
    fits = {
        "k-means (pixels)": lambda s: KMeans(k, n_init=10, random_state=s).fit_predict(x),
        "spectral, kNN graph (pixels)": lambda s: SpectralClustering(
            k, affinity="nearest_neighbors", n_neighbors=10, random_state=s).fit_predict(x),
        "agglomerative, Ward (pixels)": lambda s: AgglomerativeClustering(k, linkage="ward").fit_predict(x),
    }
    rows = []
    for name, fit in fits.items():
        row = Row(dataset, name, classic=True)
        for seed in seeds if "agglomerative" not in name else seeds[:1]:  # Ward has no randomness
            start = time.perf_counter()
            pred = fit(seed)
            row.add({"acc": cluster_acc(pred, y), "nmi": nmi(pred, y), "ari": ari(pred, y),
                     "seconds": time.perf_counter() - start})
        rows.append(row)
    return rows


def method_recipe(method: str) -> tuple[Path, bool]:
    """(recipe, general?): the method's general recipe, else its digits recipe."""
    general = ROOT / "recipes" / f"{method}.toml"
    return (general, True) if general.is_file() else (ROOT / "recipes" / f"{method}_digits.toml", False)


def method_run(method: str, dataset: str, seed: int, overrides: list[str], device: str) -> dict[str, float | None]:
    """The method's recipe on the data set for one seed, through the real engine and MLflow tracker."""
    from toolkit.recipe.loading import load_recipe
    from toolkit.run.engine import Engine
    from toolkit.track.tracker import MlflowTracker

    recipe, _ = method_recipe(method)
    settings = [*DATASETS[dataset], "experiment.protocol=transductive", f"experiment.seed={seed}", *overrides]
    rec = load_recipe(recipe, settings)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        summary = Engine(rec, Path(out) / "run", device=device, observers=[MlflowTracker()]).run()
    return {**{m: summary.get(m) for m in ("acc", "nmi", "ari", "ece")}, "seconds": time.perf_counter() - start}


@dataclass(frozen=True)
class Unit:
    """What one worker runs in order: every method on one data set and seed (so a later method reuses the
    SimCLR backbone an earlier one pretrained), or the classic baselines of one data set (all seeds)."""

    dataset: str
    seed: int | None  # None: the classic baselines
    methods: tuple[str, ...] = ()
    overrides: tuple[str, ...] = ()
    device: str = "cpu"
    classic_seeds: tuple[int, ...] = ()

    @property
    def cost(self) -> float:
        """Expected seconds, to start the longest units first."""
        return 1.0 if self.seed is None else COST.get(self.dataset, 300.0)


#: Seconds of one seed of every method per data set on one worker thread (RESULTS.md, the 49-min suite of
#: 2026-12-07, sums of its s / run column).
COST = {"lfw_subset": 482.0, "photo_patches": 475.0, "digits_color": 385.0, "digits": 356.0, "digits_lt10": 145.0,
        "digits_lt50": 130.0}


def run_unit(unit: Unit) -> list[tuple[str, int, dict[str, float | None] | None, str]]:
    """(method, seed, scores or None, failure) for each method of the unit; a failed run is a failure line."""
    assert unit.seed is not None
    out = []
    for method in unit.methods:
        try:
            out.append((method, unit.seed, method_run(method, unit.dataset, unit.seed, list(unit.overrides),
                                                      unit.device), ""))
        except Exception as exc:  # noqa: BLE001 - a failed run is reported as a row, the suite goes on
            out.append((method, unit.seed, None, f"seed {unit.seed}: {type(exc).__name__}: "
                                                  f"{str(exc).splitlines()[0][:160]}"))
            if os.environ.get("SUITE_TRACEBACK"):
                traceback.print_exc()
    return out


def run_any(unit: Unit) -> list:
    """A classic unit's rows, or a method unit's (method, seed, scores, failure) tuples."""
    return classic_rows(unit.dataset, list(unit.classic_seeds)) if unit.seed is None else run_unit(unit)


def threads_per_job(jobs: int) -> int:
    """torch threads each of `jobs` side-by-side runs gets: the cores shared out, at least one."""
    return max(1, (os.cpu_count() or 1) // jobs)


def worker_setup(threads: int, root: str) -> None:
    """A worker process: its own torch threads, MLflow store and cache (no two processes write one SQLite file)."""
    import torch

    torch.set_num_threads(threads)
    own = Path(root) / f"worker-{os.getpid()}"
    own.mkdir(parents=True, exist_ok=True)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{own}/mlflow.db"
    os.environ["TOOLKIT_CACHE_DIR"] = str(own / "cache")


def run_units(units: list[Unit], jobs: int, tmp: str, console: Console) -> dict[Unit, list]:
    """Every unit, `jobs` at a time in separate processes (or in this one for jobs = 1), longest first."""
    results: dict[Unit, list] = {}
    order = sorted(units, key=lambda u: -u.cost)
    if jobs <= 1:
        for i, unit in enumerate(order, 1):
            results[unit] = run_any(unit)
            console.print(f"[dim]{i}/{len(order)} {describe(unit)} done[/dim]")
        return results
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    threads = threads_per_job(jobs)
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=worker_setup,
                             initargs=(threads, tmp)) as pool:
        futures = {pool.submit(run_any, u): u for u in order}
        for i, future in enumerate(as_completed(futures), 1):
            unit = futures[future]
            try:
                results[unit] = future.result()
            except Exception as exc:  # noqa: BLE001 - a worker that died: its runs are failures, never a gap
                why = f"worker failed: {type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
                results[unit] = ([Row(unit.dataset, "classic baselines", failures=[why])] if unit.seed is None
                                 else [(m, unit.seed, None, f"seed {unit.seed}: {why}") for m in unit.methods])
            console.print(f"[dim]{i}/{len(order)} {describe(unit)} done[/dim]")
    return results


def describe(unit: Unit) -> str:
    return f"{unit.dataset}: classic baselines" if unit.seed is None else f"{unit.dataset}, seed {unit.seed}"


def render(rows: list[Row], seeds: list[int]) -> tuple[Table, list[str]]:
    """The console table and the same as Markdown lines."""
    title = f"Offline suite, seeds {','.join(map(str, seeds))}"
    table = Table(title=title)
    header = ["data set", "method", "ACC", "NMI", "ARI", "ECE", "s / run", "ACC / best classic"]
    for col in header:
        table.add_column(col, justify="left" if col in ("data set", "method") else "right")
    md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    best = {}
    for r in rows:
        if r.classic and r.mean("acc") is not None:
            best[r.dataset] = max(best.get(r.dataset, 0.0), r.mean("acc") or 0.0)
    for r in rows:
        acc = r.mean("acc")
        ratio = f"{acc / best[r.dataset]:.3f}" if acc is not None and best.get(r.dataset) and not r.classic else ""
        if r.failures:
            ratio = (ratio + " " if ratio else "") + f"({len(r.failures)} failed)"
        cells = [r.dataset, r.method, *(r.cell(m) for m in ("acc", "nmi", "ari", "ece", "seconds")), ratio]
        table.add_row(*cells)
        md.append("| " + " | ".join(cells) + " |")
    return table, md


def machine() -> str:
    import torch

    return f"{platform.machine()} CPU, {os.cpu_count()} cores, torch {torch.__version__}"


def write_results(md: list[str], rows: list[Row], seeds: list[int], total: float, path: Path, jobs: int) -> None:
    failures = [f"- {r.dataset} / {r.method}: {f}" for r in rows for f in r.failures]
    command = "python benchmarks/suite.py " + " ".join(sys.argv[1:])
    section = [f"## Offline multi-data-set suite, {time.strftime('%Y-%m-%d')}, {machine()}", "",
               f"`{command.strip()}` (seeds {','.join(map(str, seeds))}; mean ± std over seeds; classic baselines "
               "on raw pixels in the same run; s / run is the wall time of one seed; methods run in the order listed "
               "and reuse a SimCLR backbone an earlier one pretrained with the same settings, data and seed; "
               f"{jobs} run(s) at a time, {threads_per_job(jobs)} torch thread(s) each).",
               "", *md, "", f"Whole suite: {total / 60:.0f} min wall time.", ""]
    if failures:
        section += ["Failed runs:", "", *failures, ""]
    with path.open("a", encoding="utf-8") as fh:
        fh.write("\n" + "\n".join(section))


def main() -> None:
    from toolkit.run.seeds import parse_seeds

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="*", default=METHODS)
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--seeds", default="0-2")
    parser.add_argument("--quick", action="store_true", help="one seed (0)")
    parser.add_argument("--all", action="store_true", help="also run the pairs in SKIPPED (hours on a CPU)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="recipe override for every run")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--jobs", type=int, default=0,
                        help="runs at a time, each in its own process with cores/jobs torch threads (0: one per core "
                             "on the CPU, 1 on a GPU); a data set's methods for one seed run in order in one worker")
    parser.add_argument("--no-write", action="store_true", help="print only; do not append to benchmarks/RESULTS.md")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "RESULTS.md")
    args = parser.parse_args()
    seeds = [0] if args.quick else parse_seeds(args.seeds)
    tmp = tempfile.mkdtemp(prefix="suite-")
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{tmp}/mlflow.db")
    os.environ.setdefault("TOOLKIT_CACHE_DIR", f"{tmp}/cache")
    console = Console()
    started = time.perf_counter()
    jobs = args.jobs if args.jobs > 0 else (os.cpu_count() or 1) if args.device == "cpu" else 1
    if jobs > 1:
        console.print(f"{jobs} runs at a time, {threads_per_job(jobs)} torch threads each; MLflow "
                      f"stores and caches per worker under {tmp}")
    ran = {(m, d) for d in args.datasets for m in args.methods if args.all or (m, d) not in SKIPPED}
    units = [Unit(d, None, classic_seeds=tuple(seeds)) for d in args.datasets]
    units += [Unit(d, seed, tuple(m for m in args.methods if (m, d) in ran), tuple(args.overrides), args.device)
              for d in args.datasets for seed in seeds if any((m, d) in ran for m in args.methods)]
    results = run_units(units, jobs, tmp, console)
    rows: list[Row] = []
    for dataset in args.datasets:
        rows += results[next(u for u in units if u.dataset == dataset and u.seed is None)]
        for method in args.methods:
            if (method, dataset) not in ran:
                rows.append(Row(dataset, method, skipped=SKIPPED[(method, dataset)]))
                continue
            recipe, general = method_recipe(method)
            row = Row(dataset, method if general else f"{method} ({recipe.stem}.toml)")
            for unit in sorted((u for u in units if u.dataset == dataset and u.seed is not None), key=lambda u: u.seed):
                for name, _, scores, failure in results[unit]:
                    if name == method and scores is not None:
                        row.add(scores)
                    elif name == method:
                        row.failures.append(failure)
            rows.append(row)
    table, md = render(rows, seeds)
    console.print(table)
    for r in rows:
        for f in r.failures:
            console.print(f"{r.dataset} / {r.method}: {f}")
    total = time.perf_counter() - started
    console.print(f"whole suite: {total / 60:.1f} min")
    if not args.no_write:
        write_results(md, rows, seeds, total, args.results, jobs)
        console.print(f"appended to {args.results}")


if __name__ == "__main__":
    main()

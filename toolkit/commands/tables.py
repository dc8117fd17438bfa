"""The tables the CLI prints: a run's results, a search's best trials."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.table import Table

from toolkit.metric_names import HEADLINE_METRICS

if TYPE_CHECKING:
    from toolkit.run.seeds import SeedsResult
    from toolkit.tune.results import SearchResult

_MAIN = (*HEADLINE_METRICS, "clu_acc", "clu_nmi", "clu_ari", "clu_ece",
         "mean_confidence", "cluster_entropy", "selected_fraction", "pseudo_label_acc")


def summary_table(summary: dict[str, Any]) -> Table:
    title = f"{summary['recipe']} | {summary['dataset']} | protocol {summary['protocol']}"
    if summary.get("oracle"):
        title += " | ORACLE (selected with ground truth)"
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in _MAIN:
        value = summary.get(key)
        if isinstance(value, (int, float)):
            table.add_row(key, f"{value:.4f}")
    if not summary.get("evaluated", True):
        table.add_row("evaluation", "none: the data set has no labels")
    if summary.get("skipped_images"):
        table.add_row("unreadable images skipped", str(summary["skipped_images"]))
    table.add_row("epochs", str(summary.get("epochs")))
    table.add_row("seconds", f"{summary.get('seconds', 0):.1f}")
    table.add_row("device", str(summary.get("device")))
    table.add_row("mlflow_run_id", str(summary.get("mlflow_run_id")))
    return table


def results_table(result: "SearchResult", top: int = 10) -> Table:
    """The best `top` trials of a search, best first, with their sampled values."""
    keys = sorted({k for r in result.rows for k in r["config"]})
    table = Table(title=f"toolkit tune: best trials by {result.metric} ({result.mode})")
    for col in ("trial", "status", *keys, result.metric, "epoch"):
        table.add_column(col, no_wrap=True)
    for r in result.rows[:top]:
        metric = f"{r['metric']:.4f}" if isinstance(r["metric"], float) else "-"
        cells = [_fmt(r["config"].get(k)) for k in keys]
        status = r["status"] if r["status"] != "failed" else "[red]failed[/]"
        table.add_row(r["trial_id"], status, *cells, metric, str(r["epoch"] if r["epoch"] is not None else "-"))
    return table


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def seeds_table(result: "SeedsResult") -> Table:
    """Mean ± sample std of every metric over the seeds of `--seeds`, with each seed's value."""
    from pathlib import Path

    table = Table(title=f"{Path(result.recipe).name} | seeds {', '.join(map(str, result.seeds))} | mean and std (ddof=1)")
    table.add_column("metric")
    for col in ("mean", "std", *(f"seed {s}" for s in result.seeds)):
        table.add_column(col, justify="right")
    for name, agg in result.metrics.items():
        std = "-" if agg["std"] is None else f"{agg['std']:.4f}"
        table.add_row(name, f"{agg['mean']:.4f}", std, *(f"{agg['values'][str(s)]:.4f}" for s in result.seeds))
    table.caption = f"MLflow parent run {result.parent_run_id}; per-seed runs in {result.output_dir}/seed-<s>/"
    return table

"""The final results table on the terminal."""

from __future__ import annotations

from typing import Any

from rich.table import Table

_MAIN = ("acc", "nmi", "ari", "ece", "nmi_geometric", "many_to_one_acc", "clu_acc", "clu_nmi", "clu_ari", "clu_ece",
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
    table.add_row("epochs", str(summary.get("epochs")))
    table.add_row("seconds", f"{summary.get('seconds', 0):.1f}")
    table.add_row("device", str(summary.get("device")))
    table.add_row("mlflow_run_id", str(summary.get("mlflow_run_id")))
    return table

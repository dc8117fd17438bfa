"""The report's figure: ACC against ECE per row (mean, with std as error bars), the trade-off calibration papers
argue about in one picture: up and to the left is better. Oracle rows are drawn hollow."""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from toolkit.track.report import Report


def accuracy_vs_calibration_png(report: Report, path: str | Path) -> int:
    """Write the PNG; returns how many rows it shows (rows without both ACC and ECE cannot be placed)."""
    fig = Figure(figsize=(7.5, 5.0))
    ax = fig.add_subplot(1, 1, 1)
    shown = 0
    for title, rows in report.sections():
        oracle = title.startswith("oracle")
        for row in rows:
            if "acc" not in row.mean or "ece" not in row.mean:
                continue
            label = " | ".join(row.keys) + (" (oracle)" if oracle else "") + f"  n={len(row.runs)}"
            bars = ax.errorbar(row.mean["ece"], row.mean["acc"], xerr=row.std.get("ece") or 0,
                               yerr=row.std.get("acc") or 0, fmt="o", capsize=3, markersize=7, label=label)
            if oracle:
                bars[0].set_markerfacecolor("white")
            shown += 1
    ax.set_xlabel("ECE (lower is better)")
    ax.set_ylabel("ACC (higher is better)")
    ax.set_title("accuracy vs calibration, mean ± std over runs")
    ax.grid(alpha=0.3)
    if shown:
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    else:
        ax.text(0.5, 0.5, "no row has both ACC and ECE", ha="center", va="center", transform=ax.transAxes)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(out, format="png", dpi=120, bbox_inches="tight")
    return shown

"""Evaluation figures written straight to PNG with the Agg canvas (no pyplot, no global state)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from toolkit.metrics import ece, reliability_bins
from toolkit.ops.matching import contingency, hungarian_map

if TYPE_CHECKING:
    from toolkit.ops.estimate_k import KEstimate

_ANNOTATE_MAX_CELLS = 400  # beyond this many cells the numbers become unreadable


def _save(fig: Figure, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(out, format="png", dpi=120, bbox_inches="tight")
    return out


def reliability_diagram_png(
    confidence: np.ndarray, correct: np.ndarray, path: str | Path, n_bins: int = 15, title: str = ""
) -> Path:
    """Accuracy per confidence bin against the diagonal of perfect calibration, the gap to each bin's mean
    confidence hatched (red: over-confident, green: under-confident), and below it how many images each
    bin holds: a striking bar of one image and a quiet bar of a thousand weigh very differently in the ECE."""
    bins = reliability_bins(confidence, correct, n_bins)
    edges, count = bins["bin_edges"], bins["bin_count"]
    filled = count > 0
    left, width = edges[:-1][filled], np.diff(edges)[filled]
    acc, conf = bins["bin_acc"][filled], bins["bin_conf"][filled]
    fig = Figure(figsize=(5, 6.4))
    grid = fig.add_gridspec(2, 1, height_ratios=(3, 1.2), hspace=0.08)
    ax = fig.add_subplot(grid[0])
    ax.bar(left, acc, width=width, align="edge", edgecolor="black", color="tab:blue", label="accuracy of the bin")
    over = conf > acc
    for mask, colour, label in ((over, "tab:red", "over-confident by"), (~over, "tab:green", "under-confident by")):
        if mask.any():
            low, high = np.minimum(acc, conf)[mask], np.maximum(acc, conf)[mask]
            ax.bar(left[mask], high - low, bottom=low, width=width[mask], align="edge", facecolor="none",
                   edgecolor=colour, hatch="//", linewidth=0.8, label=label)
    ax.plot([0, 1], [0, 1], linestyle="--", color="gray", label="perfect calibration")
    ax.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy")
    ax.tick_params(labelbottom=False)
    head = f"{title}\n" if title else ""
    ax.set_title(f"{head}ECE = {ece(confidence, correct, n_bins):.4f} over {len(confidence)} images", fontsize=10)
    hist = fig.add_subplot(grid[1], sharex=ax)
    hist.bar(left, count[filled], width=width, align="edge", color="tab:gray", edgecolor="black")
    for x, w, c in zip(left, width, count[filled]):
        hist.text(x + w / 2, c, str(int(c)), ha="center", va="bottom", fontsize=6)
    hist.set(xlabel="confidence (bins of equal width)", ylabel="images")
    if count.max() > 50 * max(count[filled].min(), 1):
        hist.set_yscale("log")
    hist.set_ylim(top=count.max() * (3 if hist.get_yscale() == "log" else 1.25))
    fig.legend(*ax.get_legend_handles_labels(), loc="lower center", ncol=2, fontsize="small", frameon=False,
               bbox_to_anchor=(0.5, -0.06))
    return _save(fig, path)


def confusion_matrix_png(pred: np.ndarray, target: np.ndarray, path: str | Path, title: str = "") -> Path:
    """Rows = true classes, columns = clusters ordered by their Hungarian match (diagonal = matching).

    Unmatched clusters come last, largest first.
    """
    table = contingency(pred, target)  # [clusters, classes]
    mapping = hungarian_map(pred, target)
    matched = np.flatnonzero(mapping >= 0)
    unmatched = np.flatnonzero(mapping < 0)
    order = np.concatenate([matched[np.argsort(mapping[matched])], unmatched[np.argsort(-table[unmatched].sum(1))]])
    matrix = table[order].T  # [classes, clusters in display order]
    n_true, n_pred = matrix.shape
    fig = Figure(figsize=(max(4.0, 0.45 * n_pred + 2), max(3.5, 0.45 * n_true + 1.5)))
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="Blues", aspect="auto")
    fig.colorbar(image, ax=ax)
    ax.set_xticks(range(n_pred), [str(c) for c in order], rotation=90 if n_pred > 20 else 0)
    ax.set_yticks(range(n_true), [str(c) for c in range(n_true)])
    ax.set(xlabel="cluster (ordered by matched class)", ylabel="true class", title=title or "confusion matrix")
    if matrix.size <= _ANNOTATE_MAX_CELLS:
        threshold = matrix.max() / 2 if matrix.size else 0
        for (row, col), value in np.ndenumerate(matrix):
            ax.text(col, row, str(value), ha="center", va="center", fontsize=7,
                    color="white" if value > threshold else "black")
    return _save(fig, path)


def k_estimate_png(estimate: "KEstimate", path: str | Path) -> Path:
    """The K-estimation curve (score per candidate K, the chosen one marked), for `num_clusters = "auto"`."""
    fig = Figure(figsize=(5, 3.2))
    ax = fig.add_subplot()
    ax.plot(estimate.ks, estimate.scores, marker="o", markersize=3)
    ax.axvline(estimate.k, color="tab:red", linestyle="--", label=f"K = {estimate.k}")
    ax.set_xlabel("K")
    ax.set_ylabel("eigengap" if estimate.criterion == "eigengap" else "mean silhouette")
    ax.set_title(f"number of clusters by {estimate.criterion}")
    ax.legend()
    return _save(fig, path)

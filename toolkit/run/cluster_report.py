"""What `toolkit cluster` leaves for a person to look at: a CSV, one folder per cluster, grids and an index.

The folders hold symbolic links to the original images (or copies with `copy=True`, for file systems
or viewers without links), so sorting a photo collection costs no disk space.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from toolkit.run.predict import PredictResult, write_csv, write_grids


def write_cluster_report(result: PredictResult, source: Path, out: Path, copy: bool = False,
                         skipped: list[str] | None = None, metrics: dict[str, float] | None = None) -> list[Path]:
    """clusters.csv, clusters/<cluster>/ (links or copies), grids/cluster_NNN.png, index.md; returns them."""
    out.mkdir(parents=True, exist_ok=True)
    written = [write_csv(result, out / "clusters.csv")]
    folders = out / "clusters"
    if folders.exists():  # a rerun into the same folder: the old assignment must not linger
        shutil.rmtree(folders)
    for name, cluster in zip(result.names, result.clusters.tolist()):
        target = folders / f"{cluster:03d}" / name.replace("/", "__")
        target.parent.mkdir(parents=True, exist_ok=True)
        original = (source / name).resolve()
        if copy:
            shutil.copy2(original, target)
        else:
            os.symlink(original, target)
    written.append(folders)
    grids = write_grids(result, out / "grids")
    written += grids
    shown = [_relative(Path(s), source) for s in skipped or []]
    written.append(_index(result, source, out, grids, shown, metrics or {}))
    return written


def _relative(path: Path, source: Path) -> str:
    """`path` as the user knows it inside the folder they gave (absolute when it lies elsewhere)."""
    try:
        return path.resolve().relative_to(source.resolve()).as_posix()
    except ValueError:
        return str(path)


def _index(result: PredictResult, source: Path, out: Path, grids: list[Path], skipped: list[str],
           metrics: dict[str, float]) -> Path:
    """A Markdown page: one section per cluster (size, mean confidence, grid), largest cluster first."""
    sizes = torch.bincount(result.clusters, minlength=int(result.clusters.max()) + 1 if len(result.clusters) else 0)
    lines = [f"# Clusters of {source}", "",
             f"{len(result.names)} images in {int((sizes > 0).sum())} clusters; `clusters.csv` lists every image "
             "with its cluster and confidence, `clusters/NNN/` holds each cluster's images."]
    if skipped:
        lines += ["", f"{len(skipped)} unreadable file(s) skipped: " + ", ".join(f"`{s}`" for s in skipped[:20])
                  + (" ..." if len(skipped) > 20 else "")]
    if metrics:
        lines += ["", "Scores against the sub-folder names (evaluation only): "
                  + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items())]
    by_name = {p.stem: p for p in grids}
    for cluster in sizes.argsort(descending=True).tolist():
        if sizes[cluster] == 0:
            continue
        members = result.clusters == cluster
        grid = by_name.get(f"cluster_{cluster:03d}")
        lines += ["", f"## Cluster {cluster:03d}: {int(sizes[cluster])} images, mean confidence "
                      f"{float(result.confidence[members].mean()):.3f}", ""]
        if grid is not None:
            lines.append(f"![cluster {cluster:03d}]({grid.relative_to(out).as_posix()})")
    path = out / "index.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path

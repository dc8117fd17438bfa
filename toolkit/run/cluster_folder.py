"""`toolkit cluster DIR`: the most common request, "cluster my own images", as one command.

It runs a method's general recipe on the folder (as `[data] dataset = "image_folder"`), then assigns every
readable image with the finished model and writes the report (`toolkit.run.cluster_report`). The run is an
ordinary run in `OUT/run`, logged to MLflow like any other; the report is added to that MLflow run.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolkit.errors import UserError

#: The image side the folder's images are resized to unless told otherwise: small enough for a CPU,
#: and a folder's first image (the loader's default) may be a 4000 x 3000 photo.
DEFAULT_IMAGE_SIZE = 32


@dataclass
class ClusterOutcome:
    """The finished run's summary, where the report went, and what was skipped."""

    summary: dict[str, Any]
    report: Path
    run_dir: Path
    images: int
    clusters: int
    skipped: list[str] = field(default_factory=list)


def recipe_dirs() -> list[Path]:
    """Where general recipes are looked for: $TOOLKIT_RECIPES, ./recipes, then the source checkout's recipes/."""
    import toolkit

    dirs = [Path(p) for p in os.environ.get("TOOLKIT_RECIPES", "").split(os.pathsep) if p]
    return dirs + [Path("recipes"), Path(toolkit.__file__).resolve().parents[1] / "recipes"]


def general_recipe(method: str) -> Path:
    """The general recipe of `method` (`<method>.toml`), or a one-line error naming where it looked."""
    for folder in recipe_dirs():
        path = folder / f"{method}.toml"
        if path.is_file():
            return path
    known = sorted({p.stem for d in recipe_dirs() if d.is_dir() for p in d.glob("*.toml") if "_" not in p.stem})
    raise UserError(f"no general recipe for method '{method}' (looked for {method}.toml in "
                    f"{', '.join(str(d) for d in recipe_dirs())}); general recipes found: "
                    f"{', '.join(known) or 'none'}; or pass --recipe FILE")


def parse_k(k: int | str) -> int | str:
    """-k: a whole number of at least 2, or "auto"; anything else is a one-line error."""
    text = str(k).strip().lower()
    if text == "auto":
        return "auto"
    if not text.isdigit() or int(text) < 2:
        raise UserError(f"-k {k}: give a whole number of clusters (at least 2) or auto")
    return int(text)


def cluster_overrides(folder: Path, k: int | str, image_size: int, strict: bool, evaluate: bool) -> list[str]:
    """The recipe settings that point a general recipe at the folder (before the user's own --set); the
    path is quoted (a TOML string), so a folder named e.g. 2024 stays a path."""
    value = '"auto"' if k == "auto" else str(k)
    return ["data.dataset=image_folder", f"data.root={json.dumps(str(folder))}", f"data.num_clusters={value}",
            f"data.image_size={image_size}", f"data.labels={str(evaluate).lower()}",
            f"data.strict={str(strict).lower()}", "experiment.protocol=transductive"]


def cluster_folder(folder: Path, k: int | str, out: Path, recipe: Path, overrides: list[str], *,
                   device: str | None = None, observers: list[Any] | None = None, copy: bool = False,
                   strict: bool = False, image_size: int = DEFAULT_IMAGE_SIZE, evaluate: bool = False) -> ClusterOutcome:
    """Train on `folder`, assign its images, write the report to `out`; see the module docstring."""
    from toolkit.recipe.loading import load_recipe
    from toolkit.run.cluster_report import write_cluster_report
    from toolkit.run.engine import Engine
    from toolkit.run.predict import predict_run

    folder = Path(folder).expanduser().resolve()
    if not folder.is_dir():
        raise UserError(f"{folder}: folder not found")
    k = parse_k(k)
    rec = load_recipe(recipe, cluster_overrides(folder, k, image_size, strict, evaluate) + list(overrides))
    run_dir = out / "run"
    summary = Engine(rec, run_dir, device=device, observers=list(observers or [])).run()
    skipped = [str(s) for s in summary.get("skipped_files", [])]
    result = predict_run(run_dir, folder, device or "auto", skip=skipped)
    metrics = {m: float(summary[m]) for m in ("acc", "nmi", "ari") if evaluate and summary.get(m) is not None}
    written = write_cluster_report(result, folder, out, copy=copy, skipped=skipped, metrics=metrics)
    _log_report(observers or [], out, written)
    return ClusterOutcome(summary, out / "index.md", run_dir, len(result.names),
                          int(result.clusters.unique().numel()), skipped)


def _log_report(observers: list[Any], out: Path, written: list[Path]) -> None:
    """Add the report to the run's MLflow run (the tracker among the observers knows its store and id)."""
    for obs in observers:
        client, run_id = getattr(obs, "client", None), getattr(obs, "run_id", None)
        if client is None or run_id is None:
            continue
        for path in written:
            if path.is_file():
                rel = path.relative_to(out).parent.as_posix()
                client.log_artifact(run_id, str(path), artifact_path="cluster_report" + ("" if rel == "." else f"/{rel}"))

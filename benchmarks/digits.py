"""Digits benchmark: every recipes/*_digits.toml beside classic clustering on raw pixels, in one run.

    python benchmarks/digits.py [--recipes recipes/*_digits.toml] [--set key=value ...]

Prints ACC / NMI / ARI / ECE and wall time per method, and each deep recipe's ACC as a ratio of the
best classic baseline. Runs are logged to a throw-away MLflow store unless MLFLOW_TRACKING_URI is set.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table
from sklearn.cluster import AgglomerativeClustering, KMeans, SpectralClustering
from sklearn.datasets import load_digits

from toolkit.metrics import ari, cluster_acc, nmi

ROOT = Path(__file__).resolve().parents[1]


def classic_baselines() -> list[dict]:
    digits = load_digits()
    x, y = digits.data, digits.target
    methods = {
        "k-means (raw pixels)": lambda: KMeans(10, n_init=10, random_state=0).fit_predict(x),
        "spectral, kNN graph (raw pixels)": lambda: SpectralClustering(10, affinity="nearest_neighbors", n_neighbors=10,
                                                                      random_state=0).fit_predict(x),
        "agglomerative, Ward (raw pixels)": lambda: AgglomerativeClustering(10, linkage="ward").fit_predict(x),
    }
    rows = []
    for name, fit in methods.items():
        start = time.perf_counter()
        pred = fit()
        rows.append({"method": name, "acc": cluster_acc(pred, y), "nmi": nmi(pred, y), "ari": ari(pred, y),
                     "ece": None, "seconds": time.perf_counter() - start})
    return rows


def deep_rows(recipes: list[Path], overrides: list[str]) -> list[dict]:
    from toolkit.engine import Engine
    from toolkit.recipe import load_recipe
    from toolkit.tracking import MlflowTracker

    rows = []
    for path in recipes:
        recipe = load_recipe(path, overrides)
        with tempfile.TemporaryDirectory() as out:
            summary = Engine(recipe, Path(out) / "run", device="cpu", observers=[MlflowTracker()]).run()
        rows.append({"method": f"{path.stem} (toolkit run)", **{k: summary.get(k) for k in ("acc", "nmi", "ari", "ece")},
                     "seconds": summary["seconds"]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="*", type=Path, default=sorted((ROOT / "recipes").glob("*_digits.toml")))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    tmp = tempfile.mkdtemp()
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{tmp}/mlflow.db")
    os.environ.setdefault("TOOLKIT_CACHE_DIR", f"{tmp}/cache")
    classic = classic_baselines()
    deep = deep_rows(args.recipes, args.overrides)
    best = max(r["acc"] for r in classic)
    table = Table(title=f"sklearn digits (1797 images), {time.strftime('%Y-%m-%d')}")
    for col in ("method", "ACC", "NMI", "ARI", "ECE", "seconds", "ACC / best classic"):
        table.add_column(col, justify="left" if col == "method" else "right")
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    for r in classic + deep:
        table.add_row(r["method"], fmt(r["acc"]), fmt(r["nmi"]), fmt(r["ari"]), fmt(r["ece"]), f"{r['seconds']:.1f}",
                      f"{r['acc'] / best:.3f}")
    Console().print(table)
    sys.exit(0)


if __name__ == "__main__":
    main()

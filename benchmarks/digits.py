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
from toolkit.run.seeds import parse_seeds

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
    from toolkit.run.engine import Engine
    from toolkit.recipe.loading import load_recipe
    from toolkit.track.parent import ParentRun
    from toolkit.track.tracker import MlflowTracker

    from toolkit.run.events import Observer

    class Epoch0(Observer):  # metrics right after head-init (e.g. SPICE-self = SPICE stage 2)
        metrics: dict = {}
        generation: dict = {}

        def on_epoch_end(self, *, stage: str, epoch: int, metrics: dict, state: object) -> None:
            if stage == "self_label" and epoch == 0:
                self.metrics = dict(metrics)
            if stage == "generation":  # GCC: the latest round's generator figures (conditional fidelity)
                self.generation = dict(metrics)

    rows = []
    for path in recipes:
        recipe = load_recipe(path, overrides)
        epoch0 = Epoch0()
        with tempfile.TemporaryDirectory() as out:
            summary = Engine(recipe, Path(out) / "run", device="cpu", observers=[MlflowTracker(), epoch0]).run()
        if "clu_acc" in summary:  # two heads (CDC): epoch 0 (head init), final prediction, clustering head
            metric = ("acc", "nmi", "ari", "ece")
            from cdc_ablation import kmeans_rows  # k-means on the features the head-init saw, to compare with epoch 0

            rows += [{"method": f"{path.stem}: {r['name']}", **{k: r.get(k) for k in metric}, "seconds": float("nan")}
                     for r in kmeans_rows(path, overrides)]
            rows.append({"method": f"{path.stem} after head-init (epoch 0)", **{k: epoch0.metrics.get(k) for k in metric},
                         "seconds": float("nan")})
            rows.append({"method": f"{path.stem} final prediction (toolkit run)", **{k: summary.get(k) for k in metric},
                         "seconds": summary["seconds"]})
            rows.append({"method": f"{path.stem} clustering head (clu_*)", **{k: summary.get(f"clu_{k}") for k in metric},
                         "seconds": summary["seconds"]})
            continue
        if summary["plugins"].get("generation") == "conditional_ddpm":  # GCC: stage I vs stage II
            metric = ("acc", "nmi", "ari", "ece")
            rows.append({"method": f"{path.stem} stage I (k-means head, epoch 0)",
                         **{k: epoch0.metrics.get(k) for k in metric}, "seconds": float("nan")})
            rows.append({"method": f"{path.stem} stage II (toolkit run)", **{k: summary.get(k) for k in metric},
                         "seconds": summary["seconds"],
                         "note": f"{path.stem}: conditional fidelity of the last round's pool "
                                 f"{epoch0.generation.get('fidelity', float('nan')):.3f}"})
            continue
        if "reliable_label_acc" in summary:  # methods with a separate head-init stage worth its own row (SPICE)
            rows.append({"method": f"{path.stem} after head-init (epoch 0)",
                         **{k: epoch0.metrics.get(k) for k in ("acc", "nmi", "ari", "ece")}, "seconds": float("nan")})
            rows.append({"method": f"{path.stem} final (toolkit run)", **{k: summary.get(k) for k in ("acc", "nmi", "ari", "ece")},
                         "seconds": summary["seconds"], "note": f"{path.stem}: reliable labels {summary['reliable_label_acc']:.3f} "
                         f"accurate ({summary.get('reliable_label_count', 0):.0f} images) vs all labels {summary.get('all_label_acc', float('nan')):.3f}"})
            continue
        rows.append({"method": f"{path.stem} (toolkit run)", **{k: summary.get(k) for k in ("acc", "nmi", "ari", "ece")},
                     "seconds": summary["seconds"]})
    return rows


def seeded_rows(recipes: list[Path], overrides: list[str], seeds: list[int]) -> list[dict]:
    """One row per recipe run once per seed (toolkit.run.seeds): the mean, with mean ± std in a note."""
    from toolkit.run.seeds import run_seeds
    from toolkit.track.parent import ParentRun
    from toolkit.track.tracker import MlflowTracker

    rows = []
    for path in recipes:
        with tempfile.TemporaryDirectory() as out:
            res = run_seeds(path, overrides, seeds, Path(out), device="cpu", resume=False,
                            observers=lambda parent: [MlflowTracker(parent_run_id=parent)],
                            open_parent=lambda exp, name, tags, run_id: ParentRun(exp, name, tags, run_id=run_id))
        m = res.metrics
        spread = " | ".join(f"{k.upper()} {m[k]['mean']:.3f} ± {m[k]['std'] or 0:.3f}" for k in ("acc", "nmi", "ari"))
        per_seed = ", ".join(f"{v:.3f}" for v in m["acc"]["values"].values())
        if "ece" in m:
            per_seed += "; ECE per seed: " + ", ".join(f"{v:.3f}" for v in m["ece"]["values"].values())
        rows.append({"method": f"{path.stem}, mean of {len(seeds)} seeds", **{k: m[k]["mean"] if k in m else None
                     for k in ("acc", "nmi", "ari", "ece")}, "seconds": m["seconds"]["mean"] * len(seeds),
                     "note": f"{path.stem} over seeds {','.join(map(str, seeds))}: {spread} (ACC per seed: {per_seed})"})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="*", type=Path, default=sorted((ROOT / "recipes").glob("*_digits.toml")))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--seeds", default="0,1,2", help="seeds of the --multi-seed recipes (mean ± std rows)")
    parser.add_argument("--multi-seed", nargs="*", default=["drc_digits"], help="recipe stems run once per seed")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp()
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{tmp}/mlflow.db")
    os.environ.setdefault("TOOLKIT_CACHE_DIR", f"{tmp}/cache")
    classic = classic_baselines()
    multi = [p for p in args.recipes if p.stem in args.multi_seed]
    deep = deep_rows([p for p in args.recipes if p not in multi], args.overrides)
    deep += seeded_rows(multi, args.overrides, parse_seeds(args.seeds))
    best = max(r["acc"] for r in classic)
    table = Table(title=f"sklearn digits (1797 images), {time.strftime('%Y-%m-%d')}")
    for col in ("method", "ACC", "NMI", "ARI", "ECE", "seconds", "ACC / best classic"):
        table.add_column(col, justify="left" if col == "method" else "right")
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    for r in classic + deep:
        table.add_row(r["method"], fmt(r["acc"]), fmt(r["nmi"]), fmt(r["ari"]), fmt(r["ece"]), f"{r['seconds']:.1f}",
                      f"{r['acc'] / best:.3f}")
    Console().print(table)
    for r in deep:
        if r.get("note"):
            Console().print(r["note"])
    sys.exit(0)


if __name__ == "__main__":
    main()

"""CDC ablation on digits, mirroring the paper's Table 2 (init / selection / single head / stop-gradient).

    python benchmarks/cdc_ablation.py [--recipe recipes/cdc_digits.toml] [--set key=value ...] [--only NAME ...]
                                      [--seeds 0-6]

Every row is recipes/cdc_digits.toml plus --set overrides (switching a slot's method drops the file's
options for the old plugin). The pretrained backbone is cached, so only the first run pretrains.
Also prints k-means on the very features the prototype init sees, to check "ACC after init >= k-means":
with 10 restarts kept by inertia, and (for last_init = feature_kmeans) with the init's own restarts and pick.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from toolkit.run import backbone_cache as cache
from toolkit.data.registry import load_data
from toolkit.data.views import BatchView, channel_stats
from toolkit.run.engine import Engine
from toolkit.run.events import Observer
from toolkit.metrics import ari, cluster_acc, nmi
from toolkit.run.seeds import parse_seeds
from toolkit.nn.backbones import build_backbone
from toolkit.ops.kmeans import kmeans
from toolkit.recipe.loading import load_recipe

ROOT = Path(__file__).resolve().parents[1]

#: (type, name, overrides, which result: "final" or "epoch0")
VARIANTS: list[tuple[str, str, list[str], str]] = [
    ("I", "After random init", ["head_init.method=random"], "epoch0"),
    ("I", "After 'Only K-means' init (no separation)", ["head_init.orthogonalize=false", "train.epochs=0"], "epoch0"),
    ("I", "After proposed init", [], "epoch0"),
    ("I", "w/o init + CDC", ["head_init.method=random"], "final"),
    ("II", "Fixed thre. (0.99)", ["selection.method=threshold", "selection.threshold=0.99"], "final"),
    ("II", "Fixed thre. (0.95)", ["selection.method=threshold", "selection.threshold=0.95"], "final"),
    ("II", "Fixed thre. (0.90)", ["selection.method=threshold", "selection.threshold=0.90"], "final"),
    ("II", "Fixed thre. (0.80)", ["selection.method=threshold", "selection.threshold=0.80"], "final"),
    ("II", "CDC-Cal (ours)", [], "final"),
    ("III", "Single-head (Clu)", ["calibration.method=none"], "final"),
    ("IV", "Single-head (Clu+Cal)", ["calibration.single_head=true"], "final"),
    ("V", "Cal (w/o stop gradient)", ["calibration.stop_gradient=false"], "final"),
]
METRICS = ("acc", "nmi", "ari", "ece", "auroc", "aurc")


class Epoch0(Observer):
    """Keeps the metrics of the epoch-0 evaluation (the head right after head-init)."""

    def __init__(self) -> None:
        self.metrics: dict[str, float] = {}

    def on_epoch_end(self, *, stage: str, epoch: int, metrics: dict, state: object) -> None:
        if stage == "self_label" and epoch == 0:
            self.metrics = dict(metrics)


def run(recipe_path: Path, overrides: list[str], cache_runs: dict) -> tuple[dict, dict]:
    key = tuple(overrides)
    if key not in cache_runs:  # "After random init" and "w/o init + CDC" share one run
        observer = Epoch0()
        with tempfile.TemporaryDirectory() as out:
            summary = Engine(load_recipe(recipe_path, overrides), Path(out) / "run", device="cpu",
                             observers=[observer]).run()
        cache_runs[key] = (observer.metrics, summary)
    return cache_runs[key]


@torch.no_grad()
def kmeans_rows(recipe_path: Path, overrides: list[str]) -> list[dict]:
    """k-means (C clusters) on the cached pretrained backbone's raw-view features, as the init sees them."""
    from deepclust_cdc.head_init import Options as InitOptions
    from deepclust_cdc.prototypes import kmeans_restarts, row_normalise

    recipe = load_recipe(recipe_path, overrides)
    cfg = recipe.config
    train = load_data(cfg.data, cfg.experiment.protocol, cfg.experiment.seed).train
    cached = cache.load_cached(cache.backbone_key(recipe.resolved(), train.fingerprint()))
    if cached is None:
        return []
    backbone = build_backbone(cfg.model.backbone_config(), train.channels, train.image_size)
    backbone.load_state_dict(cached["backbone"])
    backbone.eval()
    view = BatchView(None, *channel_stats(train.images))
    feats = torch.cat([backbone(view(train.images[i:i + 1024])) for i in range(0, len(train.images), 1024)])
    k = cfg.data.num_clusters or train.num_classes
    seed = cfg.experiment.seed
    runs = {"k-means on backbone features": lambda: kmeans(feats, k, nredo=10, seed=seed).labels,
            "k-means on row-normalised features": lambda: kmeans(row_normalise(feats), k, nredo=10, seed=seed).labels}
    init = InitOptions(**cfg.head_init.options()) if cfg.head_init.method == "prototype" else None
    if init is not None and (init.last_init == "feature_kmeans" or not cfg.model.head_hidden_dim):
        # the init's own C-way k-means, on these features (restarts and pick as the init runs them)
        name = f"k-means on row-normalised features, init's {init.nredo} restarts, {init.restart_pick} pick"
        runs[name] = lambda: kmeans_restarts(row_normalise(feats), k, niter=init.niter, nredo=init.nredo, seed=seed,
                                             pick=init.restart_pick, tolerance=init.restart_tolerance).labels
    rows = []
    for name, fit in runs.items():
        pred = fit()
        rows.append({"type": "I", "name": name, "acc": cluster_acc(pred, train.labels), "nmi": nmi(pred, train.labels),
                     "ari": ari(pred, train.labels)})
    return rows


def ablation_rows(recipe: Path, overrides: list[str], only: list[str] | None) -> list[dict]:
    """The k-means comparators and every selected variant's row, for one recipe + overrides (one seed)."""
    runs: dict = {}
    rows = []
    for kind, name, extra, which in VARIANTS:
        if only and not any(s.lower() in name.lower() for s in only):
            continue
        epoch0, summary = run(recipe, [*overrides, *extra], runs)
        source = epoch0 if which == "epoch0" else summary
        rows.append({"type": kind, "name": name, **{m: source.get(m) for m in METRICS},
                     "clu_acc": source.get("clu_acc"), "clu_ece": source.get("clu_ece"),
                     "seconds": summary.get("seconds") if which == "final" else None})
    return kmeans_rows(recipe, overrides) + rows


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def print_one(rows: list[dict], title: str) -> None:
    table = Table(title=title)
    for col in ("type", "setting", "ACC", "NMI", "ARI", "ECE", "AUROC", "AURC", "clu ACC", "clu ECE", "seconds"):
        table.add_column(col, justify="left" if col in ("type", "setting") else "right")
    for r in rows:
        table.add_row(r["type"], r["name"], *(fmt(r.get(m)) for m in (*METRICS, "clu_acc", "clu_ece")),
                      "-" if r.get("seconds") is None else f"{r['seconds']:.0f}")
    Console().print(table)


def mean_of(cells: list[dict], key: str) -> str:
    values = [c[key] for c in cells if c.get(key) is not None]
    return fmt(float(np.mean(values)) if values else None)


def print_seeds(per_seed: dict[int, list[dict]], title: str) -> None:
    """ACC per seed with mean ± sample sd, and the mean ECE of both heads, one line per setting."""
    table = Table(title=title)
    for col in ("type", "setting", *(f"s{s}" for s in per_seed), "ACC mean ± sd", "ECE mean", "clu ECE mean"):
        table.add_column(col, justify="left" if col in ("type", "setting") else "right")
    first = next(iter(per_seed.values()))
    for i, row in enumerate(first):
        cells = [rows[i] for rows in per_seed.values()]
        accs = [c["acc"] for c in cells if c.get("acc") is not None]
        spread = f"{np.mean(accs):.3f} ± {np.std(accs, ddof=1) if len(accs) > 1 else 0:.3f}" if accs else "-"
        table.add_row(row["type"], row["name"], *(fmt(c.get("acc")) for c in cells), spread, mean_of(cells, "ece"),
                      mean_of(cells, "clu_ece"))
        if row.get("seconds") is not None and any(c.get("ece") is not None for c in cells):  # a final row
            table.add_row("", "  ECE / clu ECE", *(f"{fmt(c.get('ece'))}/{fmt(c.get('clu_ece'))}" for c in cells),
                          "", "", "")
    Console().print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "cdc_digits.toml")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--only", nargs="*", default=None, help="row names (substrings) to run; default all")
    parser.add_argument("--seeds", default=None, help="e.g. 0-6: run every row once per seed (experiment.seed) and "
                        "print ACC per seed with mean ± sd; default: the recipe's seed, full table")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp()
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{tmp}/mlflow.db")
    os.environ.setdefault("TOOLKIT_CACHE_DIR", f"{tmp}/cache")
    title = f"CDC ablation on digits ({args.recipe.name}), cf. paper Table 2"
    if args.seeds is None:
        print_one(ablation_rows(args.recipe, args.overrides, args.only), title)
        return
    per_seed = {s: ablation_rows(args.recipe, [*args.overrides, f"experiment.seed={s}"], args.only)
                for s in parse_seeds(args.seeds)}
    print_seeds(per_seed, title + f", seeds {args.seeds}")


if __name__ == "__main__":
    main()

"""How often each K-estimation criterion (toolkit/ops/estimate_k.py) finds the true number of classes.

    python benchmarks/estimate_k.py [--datasets ...] [--features pixels simclr] [--seeds 0-2]
                                    [--pretrain-epochs N]

For each offline suite data set (benchmarks/suite.py), seed and feature kind, every criterion estimates
K in [2, 50]: on the raw pixels, and on the features `toolkit run recipes/baseline.toml` with
`[data] num_clusters = "auto"` estimates from (its SimCLR backbone; the run is stopped right after the
estimate), pretrained as long as the recipe says (its "auto" rule) unless `--pretrain-epochs` is given.
Prints each estimate, how often it is exact and within 1, and the seconds. Labels give the true K only.
With TOOLKIT_CACHE_DIR pointing at the cache of a finished `benchmarks/suite.py` run, the backbones it
pretrained for the baseline are reused instead of trained again.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from suite import DATASETS, ROOT, load_pixels  # noqa: E402

import toolkit.ops.estimate_k as estimation  # noqa: E402
from toolkit.run.seeds import parse_seeds  # noqa: E402

CRITERIA = ("eigengap", "silhouette")


class _Captured(Exception):
    """Raised by the recorder to stop the run once it has handed over its features."""


def simclr_features(dataset: str, seed: int, epochs: int | None) -> np.ndarray:
    """The features the engine estimates K from: the baseline recipe pretrained on the data set."""
    from toolkit.recipe.loading import load_recipe
    from toolkit.run.engine import Engine

    captured: list[np.ndarray] = []

    def recorder(features: object, *args: object, **kwargs: object) -> None:
        captured.append(estimation.as_float32(features))
        raise _Captured

    length = [] if epochs is None else [f"pretrain.epochs={epochs}"]
    rec = load_recipe(ROOT / "recipes" / "baseline.toml",
                      [*DATASETS[dataset], "experiment.protocol=transductive", "data.num_clusters=auto",
                       f"experiment.seed={seed}", *length])
    original, estimation.estimate_k = estimation.estimate_k, recorder  # the engine imports it at call time
    try:
        with tempfile.TemporaryDirectory() as out:
            Engine(rec, Path(out) / "run", device="cpu").run()
    except _Captured:
        pass
    finally:
        estimation.estimate_k = original
    return captured[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS))
    parser.add_argument("--features", nargs="*", default=["pixels", "simclr"], choices=["pixels", "simclr"])
    parser.add_argument("--seeds", default="0-2")
    parser.add_argument("--pretrain-epochs", type=int, default=None, help="default: the recipe's own length")
    parser.add_argument("--k-range", nargs=2, type=int, default=[2, 50])
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="estimate-k-")
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{tmp}/mlflow.db")
    os.environ.setdefault("TOOLKIT_CACHE_DIR", f"{tmp}/cache")
    seeds = parse_seeds(args.seeds)
    table = Table(title=f"K estimation, K in {args.k_range}, seeds {args.seeds}")
    for col in ("data set", "true K", "features", "criterion", "estimates", "exact", "within 1", "s"):
        table.add_column(col)
    totals: dict[tuple[str, str], list[int]] = {}
    for dataset in args.datasets:
        pixels, _, true_k = load_pixels(dataset)
        for kind in args.features:
            feats = {s: pixels if kind == "pixels" else simclr_features(dataset, s, args.pretrain_epochs) for s in seeds}
            for criterion in CRITERIA:
                found, secs = [], []
                for seed in seeds:
                    start = time.perf_counter()
                    found.append(estimation.estimate_k(feats[seed], tuple(args.k_range), criterion, seed=seed).k)
                    secs.append(time.perf_counter() - start)
                exact, near = sum(k == true_k for k in found), sum(abs(k - true_k) <= 1 for k in found)
                tot = totals.setdefault((kind, criterion), [0, 0, 0])
                tot[0], tot[1], tot[2] = tot[0] + exact, tot[1] + near, tot[2] + len(found)
                table.add_row(dataset, str(true_k), kind, criterion, " ".join(map(str, found)),
                              f"{exact}/{len(found)}", f"{near}/{len(found)}", f"{np.mean(secs):.1f}")
    Console().print(table)
    for (kind, criterion), (exact, near, n) in totals.items():
        Console().print(f"{kind}, {criterion}: exact {exact}/{n}, within 1 {near}/{n}")


if __name__ == "__main__":
    main()

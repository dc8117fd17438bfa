"""Head-init on a frozen backbone with cached views against encoding every epoch, side by side in one run.

    python benchmarks/feature_cache.py [--seeds 0-2] [--copies 4] [--recipes R.toml ...] [--set KEY=VALUE ...]

    # a frozen convolutional backbone instead of the recipes' SimCLR MLP (randomly initialised: times only)
    python benchmarks/feature_cache.py --set pretrain.method=none --set model.backbone=timm:resnet18 \
        --set data.image_size=32

For each recipe (default: baseline_digits with `kmeans_pseudo_label`, spice_digits with `spice_prototype`) and
seed, the recipe runs twice with `[train] epochs = 0` (so the result is the head-init's): once with the
head-init's `cached_views = 0` (views encoded for every batch of every epoch) and once with
`cached_views = copies`; the SimCLR backbone comes from the cache after the first run. Prints the head_init
stage's wall time of each, the speed-up, and ACC (mean ± std over seeds; labels for the score only). `--set`
values apply to every run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


class StageClock:
    """Observer: wall time of the whole head_init stage. The engine opens it (raw features, k-means, the
    encoded copies) and the plugin's epoch loop opens and closes it again inside: only the outermost pair counts,
    so the one-off encoding the cache pays is in the figure."""

    def __init__(self) -> None:
        self.start = self.seconds = 0.0
        self.depth = 0

    def on_stage_start(self, *, stage: str, total: Any) -> None:
        if stage == "head_init":
            self.depth += 1
            if self.depth == 1:
                self.start = time.perf_counter()

    def on_stage_end(self, *, stage: str) -> None:
        if stage == "head_init" and self.depth:
            self.depth -= 1
            if self.depth == 0:
                self.seconds = time.perf_counter() - self.start


def main() -> None:
    from toolkit.recipe.loading import load_recipe
    from toolkit.run.engine import Engine
    from toolkit.run.events import Observer
    from toolkit.run.seeds import parse_seeds

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0-2")
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--recipes", nargs="+", default=[str(ROOT / "recipes" / "baseline_digits.toml"),
                                                          str(ROOT / "recipes" / "spice_digits.toml")])
    parser.add_argument("--set", dest="extra", action="append", default=[], help="more overrides for every run")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="feature-cache-")
    os.environ.setdefault("TOOLKIT_CACHE_DIR", f"{tmp}/cache")
    for path in args.recipes:
        results: dict[int, dict[str, list[float]]] = {0: {"s": [], "acc": []}, args.copies: {"s": [], "acc": []}}
        for seed in parse_seeds(args.seeds):
            for copies in (0, args.copies):
                recipe = load_recipe(path, [f"experiment.seed={seed}", "train.epochs=0",
                                            f"head_init.cached_views={copies}", *args.extra])
                clock = StageClock()
                observer = type("Clock", (Observer,), {"on_stage_start": clock.on_stage_start,
                                                        "on_stage_end": clock.on_stage_end})()
                out = Path(tmp) / f"{Path(path).stem}-s{seed}-c{copies}"
                summary = Engine(recipe, out, device="cpu", observers=[observer]).run()
                results[copies]["s"].append(clock.seconds)
                results[copies]["acc"].append(float(summary["acc"]))
        method = recipe.config.head_init.method
        extra = f", {' '.join(args.extra)}" if args.extra else ""
        print(f"{Path(path).name} ({method}), head-init only, seeds {args.seeds}, CPU {os.cpu_count()} cores{extra}")
        for copies, r in results.items():
            spread = f" ± {statistics.stdev(r['acc']):.3f}" if len(r["acc"]) > 1 else ""
            name = "encode every epoch" if copies == 0 else f"cached_views = {copies}"
            print(f"  {name:<20} head_init {statistics.fmean(r['s']):.2f} s   "
                  f"ACC {statistics.fmean(r['acc']):.3f}{spread}")
        speed = statistics.fmean(results[0]["s"]) / statistics.fmean(results[args.copies]["s"])
        print(f"  speed-up: {speed:.2f}x", flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()

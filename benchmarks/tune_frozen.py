"""A head-only `toolkit tune` search on a frozen backbone: shared cached features against encoding every step.

    python benchmarks/tune_frozen.py [--recipe recipes/frozen_features.toml] [--trials 16] [--cpus 2] [--copies 4]
                                     [--set train.epochs=5 ...]

Both searches run the same trials (random search, same seed, FIFO: every trial runs to the end) of the recipe
(default recipes/frozen_features.toml: digits at 32x32 through a frozen timm ResNet-18, randomly initialised here,
so the times are what is measured) with the backbone frozen ([train] freeze_backbone = true), one CPU per trial,
on one local Ray instance; a recipe without a [tune] section searches `train.lr` log-uniformly in [1e-5, 1e-3]. "today" encodes every batch's views through the backbone in every trial
(`cached_views = 0` in head-init and self-labeling, feature cache off); "shared" sets `cached_views = copies`
in both, so the first trial encodes the views once and the other trials read them from the feature cache
(`toolkit/run/feature_cache.py`), head-init's raw features included. A pretrained backbone (e.g. the SimCLR one
of recipes/baseline_digits.toml) is pretrained once before timing and shared by both (the backbone cache). Prints each search's wall time, the ratio, the count of encodes the shared search made
and read, and each search's trial objectives (the label-free default).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "frozen_features.toml"
SEARCH = ['tune.scheduler="fifo"', 'tune.search_alg="random"', "tune.resources.cpus=1", "train.freeze_backbone=true"]
DEFAULT_TUNE = """
[tune]
num_samples = 16

[tune.space]
"train.lr" = { type = "loguniform", low = 1e-5, high = 1e-3 }
"""


def with_tune_section(recipe: Path, folder: Path) -> Path:
    """The recipe itself, or a copy beside the runs with a default [tune] section when it has none."""
    import tomllib

    text = recipe.read_text()
    if "tune" in tomllib.loads(text):
        return recipe
    copy = folder / recipe.name
    copy.write_text(text + DEFAULT_TUNE)
    return copy


def search(recipe: Path, out: Path, trials: int, sets: list[str]) -> tuple[float, list[float]]:
    """Wall time of one search and its trials' objective values."""
    from toolkit.tune.driver import Search

    start = time.perf_counter()
    result = Search(out, progress=False).start(recipe, [*SEARCH, *sets], num_samples=trials)
    seconds = time.perf_counter() - start
    return seconds, [float(row["metric"]) for row in result.rows if row["metric"] is not None]


def head_init_copies(recipe: Path, copies: int) -> list[str]:
    """`head_init.cached_views` where the recipe's head-init has that option (kmeans_pseudo_label, spice)."""
    import tomllib

    method = tomllib.loads(recipe.read_text()).get("head_init", {}).get("method")
    return [f"head_init.cached_views={copies}"] if method in ("kmeans_pseudo_label", "spice_prototype") else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--recipe", type=Path, default=RECIPE)
    parser.add_argument("--set", dest="extra", action="append", default=[], help="more overrides for both searches")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tune-frozen-"))
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{work / 'mlflow.db'}")
    os.environ.setdefault("TOOLKIT_CACHE_DIR", str(work / "cache"))
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    import ray

    from toolkit.recipe.loading import load_recipe
    from toolkit.run.engine import Engine

    recipe = with_tune_section(args.recipe.resolve(), work)
    # a pretrained backbone both searches share, pretrained once, untimed
    Engine(load_recipe(recipe, [*args.extra, "train.epochs=0"]), work / "warm", device="cpu").run()
    for entry in (work / "cache" / "features").glob("*.pt"):  # the warm-up's encodes must not serve the searches
        entry.unlink()
    ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    try:
        os.environ["TOOLKIT_FEATURE_CACHE"] = "0"
        today, today_accs = search(recipe, work / "today", args.trials, [*args.extra, "train.cached_views=0",
                                                                          *head_init_copies(recipe, 0)])
        os.environ["TOOLKIT_FEATURE_CACHE"] = "1"
        shared, shared_accs = search(recipe, work / "shared", args.trials, [*args.extra,
                                     f"train.cached_views={args.copies}", *head_init_copies(recipe, args.copies)])
    finally:
        ray.shutdown()
    made = len(list((work / "cache").glob("features/*")))
    print(f"{args.trials} trials of {args.recipe.name} {' '.join(args.extra)}, {args.cpus} CPUs (1 per trial), "
          "backbone frozen, random search, FIFO")
    for name, seconds, accs in (("today (encode every step)", today, today_accs),
                                (f"shared cached features (M = {args.copies})", shared, shared_accs)):
        spread = f"{statistics.mean(accs):.3f} ± {statistics.pstdev(accs):.3f}, best {max(accs):.3f}" if accs else "n/a"
        print(f"{name:42s} {seconds:8.1f} s   trials' objective {spread}")
    print(f"speed-up: {today / shared:.2f}x (target >= 5x); feature-cache entries made once: {made}")


if __name__ == "__main__":
    main()

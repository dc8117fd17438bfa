"""Self-labeling on a frozen timm backbone: per-epoch time on cached features against a backbone forward per
step, side by side in one run.

    python benchmarks/frozen_features.py [--backbone timm:resnet18] [--epochs 3] [--copies 4] [--seeds 0]

Runs recipes/frozen_features.toml (digits at 32x32, randomly initialised weights: the time is what is measured;
the ACC of a random backbone means nothing) with `[train] cached_views = copies` and with `cached_views = 0`
(the weak and strong views forwarded every step, the raw view every evaluation). Prints the mean self-labeling
epoch time (training and the epoch's evaluation), the one-off encoding time of the copies, and the ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


class EpochClock:
    """Observer: seconds between self-labeling epoch ends, and from stage start to the first one."""

    def __init__(self) -> None:
        self.last = 0.0
        self.epochs: list[float] = []
        self.head_init_end = 0.0
        self.first_epoch_start = 0.0

    def on_stage_end(self, *, stage: str) -> None:
        if stage == "head_init":
            self.head_init_end = time.perf_counter()

    def on_epoch_end(self, *, stage: str, epoch: int, metrics: dict[str, float], state: Any) -> None:
        if stage != "self_label":
            return
        now = time.perf_counter()
        if epoch == 0:
            self.first_epoch_start = now  # the evaluation after head-init (and the copies' encoding) ends here
        else:
            self.epochs.append(now - self.last)
        self.last = now


def main() -> None:
    from toolkit.recipe.loading import load_recipe
    from toolkit.run.engine import Engine
    from toolkit.run.events import Observer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="timm:resnet18")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--seeds", default="0")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="frozen-")
    os.environ["TOOLKIT_CACHE_DIR"] = f"{tmp}/cache"
    rows: dict[int, list[EpochClock]] = {args.copies: [], 0: []}
    for seed in [int(s) for s in args.seeds.split(",")]:
        for copies in (args.copies, 0):
            clock = EpochClock()
            observer = type("Clock", (Observer,), {"on_stage_end": clock.on_stage_end,
                                                    "on_epoch_end": clock.on_epoch_end})()
            recipe = load_recipe(ROOT / "recipes" / "frozen_features.toml",
                                 [f"model.backbone={args.backbone}", f"train.epochs={args.epochs}",
                                  f"train.cached_views={copies}", f"experiment.seed={seed}", "head_init.nredo=3"])
            Engine(recipe, Path(tmp) / f"s{seed}-c{copies}", device="cpu", observers=[observer]).run()
            rows[copies].append(clock)
    print(f"{args.backbone} frozen, digits 32x32, {args.epochs} self-labeling epochs, seeds {args.seeds}, "
          f"CPU {os.cpu_count()} cores")
    per_epoch = {c: statistics.fmean(t for clock in clocks for t in clock.epochs) for c, clocks in rows.items()}
    setup = statistics.fmean(c.first_epoch_start - c.head_init_end for c in rows[args.copies])
    print(f"  cached_views = {args.copies}: {per_epoch[args.copies]:7.2f} s per epoch "
          f"(encoding the copies and the first evaluation: {setup:.1f} s once)")
    print(f"  cached_views = 0: {per_epoch[0]:7.2f} s per epoch")
    print(f"  per-epoch speed-up: {per_epoch[0] / per_epoch[args.copies]:.1f}x")


if __name__ == "__main__":
    main()

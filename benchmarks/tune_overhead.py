"""Overhead of `toolkit tune` over plain Ray Tune, for the same trivial trials on one Ray instance.

Both sides run N trials of the same tiny digits recipe with the same sampled values, one Engine run per
trial, reporting every self-labeling epoch. "plain" is a hand-written Ray Tune function (Engine +
tune.report, no MLflow), "plain + MLflow" adds the MLflow tracker every run has; "toolkit" is `Search` (what `toolkit tune` runs: parent/child MLflow runs,
per-trial folders, best.toml). Printed: wall time of each, their ratio (aim <= 1.2), and the time to
the first trial result. The plain side runs first and warms the backbone cache for both; the MLflow
store's one-off schema creation (a new SQLite file) happens before timing, as with an existing store.

    python benchmarks/tune_overhead.py --trials 4 --cpus 2
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "baseline_digits.toml"
TINY = ["pretrain.epochs=2", "pretrain.batch_size=256", "head_init.epochs=1", "head_init.nredo=1", "train.epochs=2",
        "model.hidden_dims=[32]", "tune.grace_period=1", 'tune.scheduler="fifo"', 'tune.search_alg="random"',
        "tune.resources.cpus=1"]


def plain_trial(config: dict[str, Any], tree: dict[str, Any], track: bool) -> None:
    """What a user would write without the toolkit's tune command: Engine + tune.report per epoch."""
    import torch
    from ray import tune

    from toolkit.run.engine import Engine
    from toolkit.run.events import Observer
    from toolkit.recipe.loading import apply_overrides, validate
    from toolkit.recipe.tune_section import as_overrides

    class Report(Observer):
        def on_epoch_end(self, *, stage: str, epoch: int, metrics: dict, state: Any) -> None:
            if stage == "self_label":
                tune.report({**metrics, "epoch": epoch})

    torch.set_num_threads(1)
    recipe = validate(apply_overrides(tree, as_overrides(config)), "bench")
    out = Path(tempfile.mkdtemp(prefix="plain-trial-"))
    observers: list[Observer] = [Report()]
    if track:  # the same MLflow logging a toolkit trial does, without the search's parent run and bookkeeping
        from toolkit.track.tracker import MlflowTracker

        observers.insert(0, MlflowTracker())
    Engine(recipe, out, observers=observers).run()


class FirstResult:
    """Time of the first trial result seen by the driver."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.first: float | None = None

    def mark(self) -> None:
        if self.first is None:
            self.first = time.perf_counter() - self.start


def run_plain(tree: dict[str, Any], space: dict[str, Any], trials: int, storage: Path, seed: int,
              track: bool) -> tuple[float, float]:
    from ray import tune
    from ray.tune.search import BasicVariantGenerator

    clock = FirstResult()

    class Cb(tune.Callback):
        def on_trial_result(self, *a: Any, **k: Any) -> None:
            clock.mark()

    trainable = tune.with_resources(tune.with_parameters(plain_trial, tree=tree, track=track), {"cpu": 1})
    tuner = tune.Tuner(trainable, param_space=space,
                       tune_config=tune.TuneConfig(metric="acc", mode="max", num_samples=trials, reuse_actors=True,
                                                   search_alg=BasicVariantGenerator(random_state=seed)),
                       run_config=tune.RunConfig(name=f"plain-{track}", storage_path=str(storage), verbose=0, callbacks=[Cb()]))
    tuner.fit()
    return time.perf_counter() - clock.start, clock.first or float("nan")


def run_toolkit(trials: int, out: Path) -> tuple[float, float]:
    from toolkit.tune.callbacks import TrialTracking
    from toolkit.tune.driver import Search

    clock = FirstResult()
    original = TrialTracking.on_trial_result

    def on_result(self: Any, *a: Any, **k: Any) -> None:
        clock.mark()
        original(self, *a, **k)

    TrialTracking.on_trial_result = on_result  # type: ignore[method-assign]
    try:
        Search(out, progress=False).start(RECIPE, TINY, num_samples=trials)
    finally:
        TrialTracking.on_trial_result = original  # type: ignore[method-assign]
    return time.perf_counter() - clock.start, clock.first or float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--cpus", type=int, default=2)
    args = parser.parse_args()
    import ray

    from toolkit.recipe.loading import load_recipe
    from toolkit.tune.space import search_space

    work = Path(tempfile.mkdtemp(prefix="tune-overhead-"))
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{work / 'mlflow.db'}")
    os.environ.setdefault("TOOLKIT_CACHE_DIR", str(work / "cache"))
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    from mlflow.tracking import MlflowClient

    MlflowClient(os.environ["MLFLOW_TRACKING_URI"]).search_experiments()  # a store's one-off schema set-up, untimed
    rec = load_recipe(RECIPE, TINY)
    tree = {k: v for k, v in rec.resolved().items() if k != "tune"}
    space, _ = search_space(rec.config.tune)  # type: ignore[arg-type]
    ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    try:
        plain_s, plain_first = run_plain(tree, space, args.trials, work / "plain", rec.experiment.seed, False)
        tracked_s, tracked_first = run_plain(tree, space, args.trials, work / "plain", rec.experiment.seed, True)
        toolkit_s, toolkit_first = run_toolkit(args.trials, work / "toolkit")
    finally:
        ray.shutdown()
    print(f"trials={args.trials} cpus={args.cpus} (1 cpu per trial), digits, 2 self-labeling epochs")
    print(f"plain Ray Tune : {plain_s:7.2f} s   first result after {plain_first:6.2f} s")
    print(f"plain + MLflow : {tracked_s:7.2f} s   first result after {tracked_first:6.2f} s")
    print(f"toolkit tune   : {toolkit_s:7.2f} s   first result after {toolkit_first:6.2f} s")
    print(f"ratio toolkit/plain: {toolkit_s / plain_s:.2f} (aim <= 1.2); toolkit/(plain + MLflow): "
          f"{toolkit_s / tracked_s:.2f}")


if __name__ == "__main__":
    main()

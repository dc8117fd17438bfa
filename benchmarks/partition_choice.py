"""Which head-init partition the silhouette picks, against the partition that is actually more accurate.

    python benchmarks/partition_choice.py [--datasets digits digits_lt10 ...] [--seeds 0-2]

For each offline suite data set (benchmarks/suite.py) and seed, the features `kmeans_pseudo_label` receives in
recipes/baseline.toml (its SimCLR backbone; the run stops at head-init) are partitioned by every candidate of
toolkit/ops/partition.py (k-means with the plugin's settings, spectral clustering with 10 and 30 neighbours,
5K k-means clusters merged by average linkage). Prints each candidate's ACC
(labels for the score only) and silhouette, the candidate the silhouette picks, and the mean ACC of the pick
against always k-means and always the best candidate (an oracle, for reference).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from suite import DATASETS, ROOT  # noqa: E402

from toolkit.run.seeds import parse_seeds  # noqa: E402


class _Captured(Exception):
    """Raised by the recorder to stop the run once head-init has its features."""


def head_init_features(dataset: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(features head-init receives, the labels) for recipes/baseline.toml on `dataset`."""
    import deepclust_baseline.head_kmeans as head_kmeans

    from toolkit.data.registry import load_data
    from toolkit.recipe.loading import load_recipe
    from toolkit.run.engine import Engine

    recipe = load_recipe(ROOT / "recipes" / "baseline.toml", [*DATASETS[dataset], f"experiment.seed={seed}"])
    captured: list[np.ndarray] = []
    cls = head_kmeans.KMeansPseudoLabelHeadInit
    original = cls.init_head

    def recorder(self, ctx, backbone, features, pretrained_head):  # type: ignore[no-untyped-def]
        captured.append(features.detach().cpu().float().numpy())
        raise _Captured

    cls.init_head = recorder  # type: ignore[method-assign]
    try:
        with tempfile.TemporaryDirectory() as out:
            Engine(recipe, Path(out) / "run", device="cpu").run()
    except Exception as exc:  # noqa: BLE001 - the engine wraps plugin errors; ours is the only one expected
        if not captured:
            raise exc
    finally:
        cls.init_head = original  # type: ignore[method-assign]
    splits = load_data(recipe.config.data, recipe.config.experiment.protocol, seed)
    return captured[0], np.asarray(splits.train.labels)


def main() -> None:
    from deepclust_baseline.head_kmeans import Options

    from toolkit.metrics import cluster_acc
    from toolkit.ops.partition import CANDIDATES, KMEANS_MARGIN, candidates, silhouette

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["digits", "digits_lt10", "digits_lt50", "lfw_subset",
                                                          "photo_patches"])
    parser.add_argument("--seeds", default="0-2")
    args = parser.parse_args()
    print("| data set | seed | " + " | ".join(f"{c} ACC (silhouette)" for c in CANDIDATES) + " | picked |")
    print("|---|---|" + "---|" * (len(CANDIDATES) + 1))
    summary: dict[str, dict[str, list[float]]] = {}
    for dataset in args.datasets:
        for seed in parse_seeds(args.seeds):
            features, labels = head_init_features(dataset, seed)
            k = len(np.unique(labels))
            o = Options()  # the plugin's k-means settings
            found = candidates(features, k, seed, niter=o.niter, nredo=o.nredo, spherical=o.spherical)
            accs = {n: float(cluster_acc(labels_n, labels)) for n, labels_n in found.items()}
            sils = {n: silhouette(features, labels_n, seed) for n, labels_n in found.items()}
            pick = max(sils, key=lambda n: sils[n] + (KMEANS_MARGIN if n == "kmeans" else 0.0))  # as "auto" picks
            row = summary.setdefault(dataset, {"pick": [], "kmeans": [], "oracle": []})
            row["pick"].append(accs[pick])
            row["kmeans"].append(accs["kmeans"])
            row["oracle"].append(max(accs.values()))
            cells = " | ".join(f"{accs[n]:.3f} ({sils[n]:.4f})" for n in CANDIDATES)
            print(f"| {dataset} | {seed} | {cells} | {pick} |", flush=True)
    print()
    print("| data set | ACC of the silhouette's pick | always k-means | best candidate (oracle) |")
    print("|---|---|---|---|")
    for dataset, row in summary.items():
        def cell(values: list[float]) -> str:
            spread = f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else ""
            return f"{statistics.fmean(values):.3f}{spread}"
        print(f"| {dataset} | {cell(row['pick'])} | {cell(row['kmeans'])} | {cell(row['oracle'])} |")


if __name__ == "__main__":
    main()

"""ACC of the CDC clustering head right after the `prototype` head-init, for label-free init variants.

    python benchmarks/cdc_init_variants.py [--recipe recipes/cdc_digits.toml] [--set key=value ...]
                                           [--seeds 0 1 2] [--only NAME ...]

Each variant is [head_init] options on top of the recipe's (see plugins/cdc/head_init.py); labels are used
only to score the head. Needs the seed's pretrained backbone in the cache (TOOLKIT_CACHE_DIR): run
benchmarks/cdc_ablation.py (or `toolkit run`) with the same recipe and seed first. Also prints k-means with
10 restarts on the same features, raw and row-normalised, as in cdc_ablation.py.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from rich.console import Console
from rich.table import Table

from deepclust_cdc.head_init import PrototypeHeadInit
from deepclust_cdc.prototypes import row_normalise
from toolkit.run import backbone_cache as cache
from toolkit.data.registry import load_data
from toolkit.data.views import BatchView, channel_stats
from toolkit.metrics import cluster_acc
from toolkit.nn.backbones import build_backbone
from toolkit.nn.heads import ClusterHead
from toolkit.ops.kmeans import kmeans
from toolkit.recipe.loading import load_recipe

ROOT = Path(__file__).resolve().parents[1]

#: name -> [head_init] options over the recipe's ("head_hidden_dim" sets the head's hidden width H, i.e.
#: the number of layer-1 prototypes, instead)
VARIANTS: dict[str, dict] = {
    "recipe (code algorithm)": {},
    "3 k-means restarts (recipe before 2026-11-25)": {"nredo": 3},
    "only k-means (no separation)": {"orthogonalize": False},
    "300 k-means iterations (code)": {"niter": 300},
    "separation steps 200": {"ortho_steps": 200},
    "separation steps 2000 (code)": {"ortho_steps": 2000},
    "hidden_normalise = l2": {"hidden_normalise": "l2"},
    "hidden_normalise = none": {"hidden_normalise": "none"},
    "unit_prototypes": {"unit_prototypes": True},
    "hidden_from = separated": {"hidden_from": "separated"},
    "last_init = feature_kmeans": {"last_init": "feature_kmeans"},
    "hidden_from = separated, hidden_normalise = l2": {"hidden_from": "separated", "hidden_normalise": "l2"},
    "hidden_from = separated, last_init = feature_kmeans": {"hidden_from": "separated",
                                                            "last_init": "feature_kmeans"},
    "restart_pick = balanced": {"restart_pick": "balanced"},
    "last_init = feature_kmeans, restart_pick = balanced": {"last_init": "feature_kmeans",
                                                            "restart_pick": "balanced"},
    "last_init = feature_kmeans, restart_pick = balanced, 30 restarts": {"last_init": "feature_kmeans",
                                                                         "restart_pick": "balanced", "nredo": 30},
    "H = 256 hidden prototypes": {"head_hidden_dim": 256},
    "H = 128 hidden prototypes": {"head_hidden_dim": 128},
}


@torch.no_grad()
def features(recipe_path: Path, overrides: list[str], seed: int) -> tuple[torch.Tensor, object, dict, int]:
    recipe = load_recipe(recipe_path, [*overrides, f"experiment.seed={seed}"])
    cfg = recipe.config
    train = load_data(cfg.data, cfg.experiment.protocol, cfg.experiment.seed).train
    cached = cache.load_cached(cache.backbone_key(recipe.resolved(), train.fingerprint()))
    if cached is None:
        raise SystemExit(f"no cached backbone for seed {seed}: run benchmarks/cdc_ablation.py --set "
                         f"experiment.seed={seed} first (same TOOLKIT_CACHE_DIR)")
    backbone = build_backbone(cfg.model.backbone_config(), train.channels, train.image_size)
    backbone.load_state_dict(cached["backbone"])
    backbone.eval()
    view = BatchView(None, *channel_stats(train.images))
    feats = torch.cat([backbone(view(train.images[i:i + 1024])) for i in range(0, len(train.images), 1024)])
    options = {k: v for k, v in recipe.resolved()["head_init"].items() if k != "method"}
    return feats.float(), train, options, int(cfg.model.head_hidden_dim)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "cdc_digits.toml")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", nargs="*", default=None, help="variant names (substrings); default all")
    args = parser.parse_args()
    names = [n for n in VARIANTS if not args.only or any(s.lower() in n.lower() for s in args.only)]
    acc: dict[str, dict[int, float]] = {n: {} for n in ["k-means on features (10 restarts)",
                                                         "k-means on row-normalised features", *names]}
    for seed in args.seeds:
        feats, train, base, hidden = features(args.recipe, args.overrides, seed)
        k = train.num_classes
        for name, x in (("k-means on features (10 restarts)", feats),
                        ("k-means on row-normalised features", row_normalise(feats))):
            acc[name][seed] = cluster_acc(kmeans(x, k, nredo=10, seed=seed).labels, train.labels)
        for name in names:
            options = {**base, **VARIANTS[name]}
            width = options.pop("head_hidden_dim", hidden)
            ctx = SimpleNamespace(num_clusters=k, seed=seed, build_head=lambda d, w=width: ClusterHead(d, k, w),
                                  resume_point=lambda stage: None, save_point=lambda *a, **kw: None, warn=print)
            start = time.time()
            torch.manual_seed(seed + 2)
            head = PrototypeHeadInit(PrototypeHeadInit.Options(**options)).init_head(ctx, None, feats, None).eval()
            with torch.no_grad():
                acc[name][seed] = cluster_acc(head(feats).argmax(1).numpy(), train.labels)
            print(f"seed {seed}  {name}: {acc[name][seed]:.3f} ({time.time() - start:.0f} s)", flush=True)
    table = Table(title=f"ACC right after prototype head-init ({args.recipe.name})")
    table.add_column("variant")
    for seed in args.seeds:
        table.add_column(f"seed {seed}", justify="right")
    table.add_column("mean", justify="right")
    for name, by_seed in acc.items():
        values = [by_seed[s] for s in args.seeds]
        table.add_row(name, *(f"{v:.3f}" for v in values), f"{sum(values) / len(values):.3f}")
    Console(width=200).print(table)


if __name__ == "__main__":
    main()

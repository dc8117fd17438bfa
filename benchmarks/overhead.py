"""Overhead of the engine: one CDC self-labeling epoch through `toolkit.run.self_label.train_epoch` (the cdc plugins
loaded from the registry, as `toolkit run` does) versus a minimal hand-written PyTorch loop doing the same
forward/backward/k-means work on the same data, device and initial weights, in the same process.

Both sides start every repeat from the same weights and draw the same batches, views and k-means seeds,
so they do the same arithmetic; the ratio is the cost of the engine's plumbing (Batch, plugin calls,
per-term bookkeeping). Sides alternate, times are medians. Aim: ratio <= 1.05. Also printed: the share
of the plain loop's epoch spent in CDC's per-batch k-means.

    python benchmarks/overhead.py                               # CIFAR-size: 50,000 images, ResNet-18, batch 1000
    python benchmarks/overhead.py --n 2000 --batch-size 250 --backbone small_cnn --miniclusters 125
"""

from __future__ import annotations

import argparse
import copy
import time
from datetime import date

import torch
import torch.nn.functional as F
from torch import nn

from _common import device_name, median, set_threads, synthetic_context, sync, table, timed_both
from deepclust_cdc.losses import minicluster_targets, negative_entropy, soft_cross_entropy
from deepclust_cdc.quota import quota_select
from toolkit.registry import entry_points as registry
from toolkit.api.context import RunContext
from toolkit.api.precision import autocast
from toolkit.run.device import resolve_device
from toolkit.run.self_label import SELF_LABEL_SALT, Models, Probe, train_epoch
from toolkit.ops import kmeans as kmeans_module


def build_plugins(args: argparse.Namespace) -> tuple:
    """The cdc plugins exactly as a recipe would get them (entry points + validated options)."""
    def make(slot: str, name: str, **options: object):  # noqa: ANN202
        cls = registry.load(slot, name)
        plugin = cls(cls.Options(**options))
        plugin.name = name
        return plugin

    cal = make("calibration", "cdc_head", num_miniclusters=args.miniclusters, kmeans_niter=args.kmeans_niter,
               kmeans_nredo=args.kmeans_nredo)
    return make("selection", "cdc_calibrated"), cal, make("generation", "none")


def optimizer_for(backbone: nn.Module, head: nn.Module, cal_head: nn.Module) -> torch.optim.Optimizer:
    """The engine's param groups for cdc_cifar10: heads 1e-4, backbone 5e-5, Adam."""
    return torch.optim.Adam([{"params": head.parameters(), "lr": 1e-4}, {"params": backbone.parameters(), "lr": 5e-5},
                             {"params": cal_head.parameters(), "lr": 1e-4}], lr=1e-4)


class KMeansClock:
    """Wall time spent inside toolkit.ops.kmeans.kmeans (it returns host arrays, so no extra sync is needed)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.inner = kmeans_module.kmeans

    def __call__(self, *args: object, **kwargs: object) -> kmeans_module.KMeansResult:
        start = time.perf_counter()
        try:
            return self.inner(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start


def plain_epoch(ctx: RunContext, epoch: int, backbone: nn.Module, head: nn.Module, cal: nn.Module,
                opt: torch.optim.Optimizer, args: argparse.Namespace, kmeans: KMeansClock) -> None:
    """CDC's self-labeling epoch written out by hand: what a user without the toolkit would write."""
    gen = ctx.generator(SELF_LABEL_SALT, epoch)
    images, dev, bs, k = ctx.data.images, ctx.device, ctx.batch_size, ctx.num_clusters
    order = torch.randperm(len(images), generator=gen)
    backbone.train()
    head.train()
    for step, start in enumerate(range(0, len(images) - len(images) % bs, bs)):
        u8 = images[order[start:start + bs].to(images.device)].to(dev, non_blocking=True)
        weak, strong = ctx.views.weak(u8, gen), ctx.views.strong(u8, gen)
        with autocast(dev):
            feats = backbone(torch.cat([weak, strong]))
            logits = head(feats)
        fw, _ = feats.float().chunk(2)
        _, ls = logits.float().chunk(2)
        cal.train()
        with torch.no_grad():
            conf = cal(fw.detach()).float().softmax(dim=1)
        rows, labels = quota_select(conf, max(1, bs // k))
        loss_clu = F.cross_entropy(ls[rows], labels) if len(rows) else ls.sum() * 0.0
        with torch.no_grad():
            with autocast(dev):
                fr = backbone(ctx.views.raw(u8)).float()
            p_clu = head(fr).float().softmax(dim=1)
            m = min(args.miniclusters, bs)
            seed = (ctx.seed * 1_000_003 + epoch * 10_007 + step) % (2**31 - 1)
            mini = kmeans(F.normalize(fr, p=1, dim=1), m, niter=args.kmeans_niter, nredo=args.kmeans_nredo, seed=seed)
            targets = minicluster_targets(p_clu, torch.as_tensor(mini.labels), m)
        cal_logits = cal(fr)
        loss = loss_clu + soft_cross_entropy(cal_logits, targets) + negative_entropy(cal_logits)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=50_000, help="images (synthetic, 32x32 RGB)")
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--backbone", default="resnet18", help="mlp, small_cnn (width 32), resnet18, resnet34")
    p.add_argument("--miniclusters", type=int, default=500, help="CDC's K per batch")
    p.add_argument("--kmeans-niter", type=int, default=50)
    p.add_argument("--kmeans-nredo", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3, help="timed epochs per side (after one warm-up epoch each)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch and faiss (0: torch's default); "
                   "1 keeps OpenMP from stalling on a machine shared with other processes")
    args = p.parse_args()
    set_threads(args.threads)
    device = resolve_device(args.device)
    ctx, _ = synthetic_context(args.n, batch_size=args.batch_size, device=device, backbone=args.backbone)
    backbone0 = ctx.build_backbone()
    head0 = ctx.build_head(int(backbone0.out_dim))
    selection, calibration, generation = build_plugins(args)

    def fresh() -> tuple[nn.Module, nn.Module, nn.Module]:
        """The same starting weights for every epoch of both sides."""
        backbone, head = copy.deepcopy(backbone0), copy.deepcopy(head0)
        calibration.setup(ctx, head, int(backbone.out_dim))
        return backbone, head, calibration.cal

    trained: dict[str, nn.Module] = {}

    def engine_side() -> tuple[float, float]:
        backbone, head, cal = fresh()
        opt = optimizer_for(backbone, head, cal)
        trained["engine"] = backbone
        return timed_both(lambda: train_epoch(ctx, 1, Models(backbone, head), opt, selection, calibration, generation,
                                              Probe(None)), device)

    clocks: list[KMeansClock] = []

    def plain_side() -> tuple[float, float]:
        backbone, head, cal = fresh()
        opt = optimizer_for(backbone, head, cal)
        trained["plain"] = backbone
        clock = KMeansClock()
        clocks.append(clock)
        return timed_both(lambda: plain_epoch(ctx, 1, backbone, head, cal, opt, args, clock), device)

    engine_side(), plain_side()  # warm-up: allocator, cuDNN autotuning, faiss threads
    clocks.clear()
    times: dict[str, list[tuple[float, float]]] = {"engine": [], "plain": []}
    for r in range(args.repeats):  # alternate which side goes first, so drift hits both
        for name, side in ((("engine", engine_side), ("plain", plain_side)) if r % 2 == 0
                           else (("plain", plain_side), ("engine", engine_side))):
            times[name].append(side())
    sync(device)
    same = max(float((a - b).abs().max()) for a, b in zip(trained["engine"].parameters(), trained["plain"].parameters()))
    steps = args.n // args.batch_size
    engine_t, plain_t = [t[0] for t in times["engine"]], [t[0] for t in times["plain"]]
    engine_c, plain_c = [t[1] for t in times["engine"]], [t[1] for t in times["plain"]]
    e, pl = median(engine_t), median(plain_t)
    km_share = median([c.seconds / t for c, t in zip(clocks, plain_t)])
    print(f"{date.today()}  device: {device_name(device)}  torch {torch.__version__}")
    print(f"one CDC epoch: n={args.n} batch={args.batch_size} ({steps} steps) backbone={args.backbone} "
          f"K={args.miniclusters} k-means niter={args.kmeans_niter} nredo={args.kmeans_nredo}, {args.repeats} repeats\n")
    print(table(["side", "wall s (median)", "min", "max", "CPU s (median)", "ms / step (wall)", "k-means share"],
                [["toolkit (train_epoch + cdc plugins)", e, min(engine_t), max(engine_t), median(engine_c),
                  1000 * e / steps, ""],
                 ["plain PyTorch loop", pl, min(plain_t), max(plain_t), median(plain_c), 1000 * pl / steps,
                  f"{km_share:.0%}"]]))
    paired = median([a / b for a, b in zip(engine_t, plain_t)])  # each repeat's two epochs ran back to back
    print(f"\nratio toolkit / plain: wall {e / pl:.3f} (medians), {paired:.3f} (median of paired repeats), "
          f"{min(engine_t) / min(plain_t):.3f} (minima); CPU time {median(engine_c) / median(plain_c):.3f}  [aim <= 1.05]")
    print(f"same computation: largest backbone weight difference after one epoch {same:.2e}")


if __name__ == "__main__":
    main()

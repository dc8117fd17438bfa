"""Training throughput of each method's main stage on a synthetic CIFAR-size set, and the ceiling.

Stages timed (one epoch each, after a warm-up epoch, through the same code `toolkit run` uses):
- cdc: self-labeling with `cdc_calibrated` + `cdc_head` (weak+strong forward/backward, raw forward,
  per-batch k-means);
- spice: self-labeling with `spice_reliable` (reliable set from a kNN once, in the warm-up epoch,
  as the paper fixes it);
- baseline: self-labeling with `threshold` selection;
- drc: its one-stage `drc` pretraining (two passes per epoch with the auxiliary head).
Images per second = data-set images trained on per second. The ceiling is forward+backward of the bare
backbone on plain batches at the same batch size (with the engine's autocast and channels_last), and
"of ceiling" is the ratio (a method that forwards each image three times cannot reach 1).

    python benchmarks/throughput.py                                  # 50,000 images 32x32, ResNet-18
    python benchmarks/throughput.py --n 1000 --backbone small_cnn --batch-size 250 --methods cdc,baseline
"""

from __future__ import annotations

import argparse
import copy
from datetime import date
from typing import Callable

import torch
from torch import nn

from _common import device_name, set_threads, synthetic_context, table, timed
from toolkit.registry import entry_points as registry
from toolkit.api.context import EpochState, RunContext
from toolkit.api.precision import autocast
from toolkit.run.device import resolve_device
from toolkit.run.self_label import Models, Probe, train_epoch

SELF_LABEL = {  # method -> (selection, options), (calibration, options)
    "cdc": (("cdc_calibrated", {}), ("cdc_head", {"num_miniclusters": 500, "kmeans_niter": 50, "kmeans_nredo": 10})),
    "spice": (("spice_reliable", {"num_neighbors": 20, "min_confidence": 0.0}), ("none", {})),
    "baseline": (("threshold", {"threshold": 0.9}), ("none", {})),
}


def plugin(slot: str, name: str, options: dict) -> object:
    cls = registry.load(slot, name)
    out = cls(cls.Options(**options))
    out.name = name
    return out


def self_label_epoch(ctx: RunContext, method: str, backbone: nn.Module, miniclusters: int,
                     separate: bool = False, sub_batch: int | None = None) -> Callable[[], None]:
    """One self-labeling epoch of `method`, set up as the engine does (state from an eval-mode encoding)."""
    (sel_name, sel_opts), (cal_name, cal_opts) = SELF_LABEL[method]
    if "num_miniclusters" in cal_opts:
        cal_opts = {**cal_opts, "num_miniclusters": miniclusters}
    selection, calibration = plugin("selection", sel_name, sel_opts), plugin("calibration", cal_name, cal_opts)
    generation = plugin("generation", "none", {})
    head = ctx.build_head(int(backbone.out_dim))
    calibration.setup(ctx, head, int(backbone.out_dim))
    generation.setup(ctx, head, int(backbone.out_dim))
    models = Models(backbone, head)
    groups = [{"params": list(m.parameters())} for m in [backbone, head, *calibration.modules().values()]]
    opt = torch.optim.Adam(groups, lr=1e-4)
    features = ctx.encode(backbone)  # the engine's per-epoch evaluation: not part of the timed stage
    with torch.no_grad():
        probs = head.eval()(features).softmax(1)
    head.train()
    state = EpochState(1, 1, features, probs, probs)
    epoch = [0]

    def go() -> None:
        epoch[0] += 1
        selection.on_epoch_start(ctx, state)
        train_epoch(ctx, epoch[0], models, opt, selection, calibration, generation, Probe(None), separate=separate,
                    sub_batch=sub_batch)

    return go


def drc_epoch(ctx: RunContext, backbone: nn.Module, batch_size: int) -> Callable[[], None]:
    pre = plugin("pretrain", "drc", {"epochs": 1, "batch_size": batch_size})
    return lambda: pre.pretrain(ctx, backbone)


def ceiling(ctx: RunContext, backbone: nn.Module, batch_size: int, steps: int) -> float:
    """Images per second of forward+backward of the bare backbone (no views, no heads, no plugins)."""
    opt = torch.optim.SGD(backbone.parameters(), lr=1e-3)
    x = torch.randn(batch_size, *ctx.data.images.shape[1:], device=ctx.device)

    def step() -> None:
        with autocast(ctx.device):
            loss = backbone(x).float().square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()
    seconds = timed(lambda: [step() for _ in range(steps)], ctx.device)
    return steps * batch_size / seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=50_000, help="synthetic images (32x32 RGB)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--methods", default="cdc,spice,baseline,drc")
    p.add_argument("--miniclusters", type=int, default=500, help="CDC's K (capped at the batch size)")
    p.add_argument("--ceiling-steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: default)")
    p.add_argument("--device", default="auto")
    p.add_argument("--compile", action="store_true", help="torch.compile the backbone, as [train] compile does")
    p.add_argument("--view-forward", choices=["joint", "separate"], default="joint", help="[train] view_forward")
    p.add_argument("--sub-batch", type=int, default=0, help="[train] sub_batch_size (0: one step per batch)")
    args = p.parse_args()
    set_threads(args.threads)
    device = resolve_device(args.device)
    ctx, _ = synthetic_context(args.n, batch_size=args.batch_size, device=device, backbone=args.backbone,
                               compile=args.compile)
    backbone0 = ctx.build_backbone()
    ceil = ceiling(ctx, copy.deepcopy(backbone0), args.batch_size, args.ceiling_steps)
    rows: list[list[object]] = [["bare backbone fwd+bwd (ceiling)", ceil, "", 1.0]]
    for method in args.methods.split(","):
        backbone = copy.deepcopy(backbone0)
        if method == "drc":
            epoch = drc_epoch(ctx, backbone, args.batch_size)
            stage = "drc pretraining (1 epoch, aux + main head)"
        else:
            epoch = self_label_epoch(ctx, method, backbone, args.miniclusters, args.view_forward == "separate",
                                     args.sub_batch or None)
            stage = "self-labeling"
        epoch()  # warm-up
        seconds = timed(epoch, device)
        rate = (args.n - args.n % args.batch_size) / seconds
        rows.append([f"{method}: {stage}", rate, seconds, rate / ceil])
    print(f"{date.today()}  device: {device_name(device)}  torch {torch.__version__}")
    print(f"n={args.n} (32x32 RGB) backbone={args.backbone} batch={args.batch_size} compile={args.compile} "
          f"view_forward={args.view_forward} sub_batch={args.sub_batch or 'none'}\n")
    print(table(["stage", "images / s", "epoch s", "of ceiling"], rows))


if __name__ == "__main__":
    main()

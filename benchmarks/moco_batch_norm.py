"""The cost of MoCo-v2's BatchNorm modes ([pretrain] batch_norm): one training step (query forward + backward,
key forward) with joint, per-view and shuffle-BN batches, side by side in one run, as ratios to joint.

    python benchmarks/moco_batch_norm.py [--backbone resnet18] [--batch 128] [--size 32] [--steps 5]

On a GPU per-view and shuffle-BN launch more, smaller kernels; on a CPU the cost is mostly the same FLOPs.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from torch import nn

from deepclust_mocov2.plugin import encode_pair, projector
from toolkit.nn.backbones import build_backbone
from toolkit.nn.config import BackboneConfig


def step_seconds(query: nn.Module, key: nn.Module, x1: torch.Tensor, x2: torch.Tensor, mode: str, groups: int,
                 steps: int) -> float:
    times = []
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps + 1):  # the first step warms up
        if x1.is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        q1, q2 = encode_pair(query, x1, x2, mode, groups)
        with torch.no_grad():
            k1, k2 = encode_pair(key, x1, x2, mode, groups, gen)
        loss = -(nn.functional.cosine_similarity(q1, k2).mean() + nn.functional.cosine_similarity(q2, k1).mean())
        query.zero_grad(set_to_none=True)
        loss.backward()
        if x1.is_cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--groups", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    backbone = build_backbone(BackboneConfig(name=args.backbone, hidden_dims=[512, 512]), 3, (args.size, args.size))
    query = nn.Sequential(backbone, projector(int(backbone.out_dim), 2048, 128, True)).to(device)
    key = copy.deepcopy(query)
    x1, x2 = (torch.randn(args.batch, 3, args.size, args.size, device=device) for _ in range(2))
    base = None
    print(f"{args.backbone}, batch {args.batch} x {args.size}x{args.size}, {device}: seconds per step (median of "
          f"{args.steps})")
    for mode in ("joint", "per_view", "shuffle"):
        seconds = step_seconds(query, key, x1, x2, mode, args.groups, args.steps)
        base = base or seconds
        print(f"  {mode:9s} {seconds:.3f} s   {seconds / base:.2f}x joint")


if __name__ == "__main__":
    main()

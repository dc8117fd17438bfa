"""Forward cost of the built-in ResNet backbones per image side: what a stem choice costs before anything runs.

    python benchmarks/backbone_flops.py [--sides 32 64 96 224] [--names resnet34 resnet34_imagenet ...]

Counts with torch's FlopCounterMode on the meta device (shapes only, no arithmetic, so it takes seconds on any
machine): GFLOPs of one image's forward pass (a multiply-add counts as two), and each backbone's ratio to the
cheapest one at the same side.
"""

from __future__ import annotations

import argparse

NAMES = ["resnet18", "resnet18_maxpool", "resnet18_imagenet", "resnet34", "resnet34_maxpool", "resnet34_imagenet"]


def forward_gflops(name: str, side: int, channels: int = 3) -> float:
    """GFLOPs of one forward pass of backbone `name` on one `side` x `side` image."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from toolkit.nn.backbones import build_backbone
    from toolkit.nn.config import BackboneConfig

    with torch.device("meta"):
        net = build_backbone(BackboneConfig(name=name), channels, (side, side)).eval()
        with FlopCounterMode(display=False) as counter:
            net(torch.empty(1, channels, side, side))
    return counter.get_total_flops() / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sides", type=int, nargs="+", default=[32, 64, 96, 224])
    parser.add_argument("--names", nargs="+", default=NAMES)
    args = parser.parse_args()
    print("| backbone | " + " | ".join(f"{s}x{s}" for s in args.sides) + " |")
    print("|---|" + "---|" * len(args.sides))
    table = {n: [forward_gflops(n, s) for s in args.sides] for n in args.names}
    cheapest = [min(col) for col in zip(*table.values())]
    for name, row in table.items():
        cells = [f"{g:.2f} ({g / c:.1f}x)" for g, c in zip(row, cheapest)]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

"""Throughput of the batched views against torchvision v2 applied one image at a time, side by side in one run.

    python benchmarks/views.py [--batch 256] [--size 32] [--repeats 5] [--device cpu|cuda] [--threads 0]

For each RandAugment op (toolkit/data/randaugment.py, every image at its own magnitude) and for the whole
strong view of the CDC/SPICE paper recipes (flip, random resized crop, 4 RandAugment ops, SCAN's Cutout),
prints images/s of the batched version and of the per-image torchvision v2 equivalent (functional op per
image; for the whole view RandomHorizontalFlip + RandomResizedCrop + RandAugment(num_ops=4) + RandomErasing as
a Cutout-like hole), and their ratio. Uint8 CIFAR-size images; the torchvision path always runs on the CPU
(the usual DataLoader worker), the batched one on --device.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch


def rate(fn: Callable[[], object], images: int, repeats: int, sync: Callable[[], None]) -> float:
    """Median images/s over `repeats` timed calls, after one warm-up call."""
    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return images / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import torchvision.transforms.v2 as T
    import torchvision.transforms.v2.functional as TF

    from toolkit.data import randaugment as ra
    from toolkit.data.views import AugmentConfig, BatchView

    device = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    g = torch.Generator().manual_seed(0)
    u8 = torch.randint(0, 256, (args.batch, 3, args.size, args.size), dtype=torch.uint8, generator=g)
    x = (u8.float() / 255).to(device)
    n, h, w = args.batch, args.size, args.size
    per_image: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
        "autocontrast": lambda im, v: TF.autocontrast(im), "equalize": lambda im, v: TF.equalize(im),
        "rotate": lambda im, v: TF.rotate(im, v), "solarize": lambda im, v: TF.solarize(im, v),
        "color": TF.adjust_saturation, "contrast": TF.adjust_contrast, "brightness": TF.adjust_brightness,
        "sharpness": TF.adjust_sharpness,
        "shear_x": lambda im, v: TF.affine(im, angle=0.0, translate=[0, 0], scale=1.0, shear=[v * 57.3, 0.0]),
        "shear_y": lambda im, v: TF.affine(im, angle=0.0, translate=[0, 0], scale=1.0, shear=[0.0, v * 57.3]),
        "translate_x": lambda im, v: TF.affine(im, angle=0.0, translate=[int(v), 0], scale=1.0, shear=[0.0, 0.0]),
        "translate_y": lambda im, v: TF.affine(im, angle=0.0, translate=[0, int(v)], scale=1.0, shear=[0.0, 0.0]),
        "posterize": lambda im, v: TF.posterize(im, int(v)),
    }
    rows = []
    for op, tv in per_image.items():
        u = torch.rand(n, generator=g)
        mags = ra._magnitude(op, u, h, w, 0.1, 0.1)
        batched_mags = mags.to(device)
        ours = rate(lambda: ra._APPLY[op](x, batched_mags), n, args.repeats, sync)
        theirs = rate(lambda: [tv(u8[i], float(mags[i])) for i in range(n)], n, args.repeats, lambda: None)
        rows.append((op, ours, theirs))

    view = BatchView(AugmentConfig(crop_scale=(0.08, 1.0), hflip=0.5, randaugment=4, cutout=0.5, cutout_random=True),
                     [0.5] * 3, [0.25] * 3)
    gen = torch.Generator(device=device).manual_seed(0) if device.type == "cuda" else torch.Generator().manual_seed(0)
    u8_dev = u8.to(device)
    pipeline = T.Compose([T.RandomHorizontalFlip(), T.RandomResizedCrop(args.size, antialias=True),
                          T.RandAugment(num_ops=4), T.ToDtype(torch.float32, scale=True),
                          T.Normalize([0.5] * 3, [0.25] * 3), T.RandomErasing(p=1.0, scale=(0.0, 0.25), ratio=(1, 1))])
    ours = rate(lambda: view(u8_dev, gen), n, args.repeats, sync)
    theirs = rate(lambda: [pipeline(u8[i]) for i in range(n)], n, args.repeats, lambda: None)
    rows.append(("whole strong view", ours, theirs))

    print(f"batch {n} x 3 x {h} x {w} uint8, batched on {device}, torchvision per image on the CPU, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}")
    print("| op | batched (images/s) | torchvision v2 per image (images/s) | ratio |")
    print("|---|---|---|---|")
    for op, ours, theirs in rows:
        print(f"| {op} | {ours:,.0f} | {theirs:,.0f} | {ours / theirs:.1f}x |")


if __name__ == "__main__":
    main()

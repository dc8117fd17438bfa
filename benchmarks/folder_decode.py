"""Image-folder decoding: one thread against `[data] workers` threads, side by side in one run.

    python benchmarks/folder_decode.py [--images 3000] [--side 96] [--workers 2]

Writes a folder of random JPEGs (two classes), loads it with `image_folder` once per setting and prints the
wall time of each and the speed-up; the images must come out identical.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from toolkit.data.config import DataConfig
from toolkit.data.image_folder import load_image_folder


def write_folder(root: Path, n: int, side: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / f"class{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(folder / f"{i:06d}.jpg", quality=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--side", type=int, default=96)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        write_folder(Path(tmp), args.images, args.side)
        times, images = {}, {}
        for workers in (1, args.workers):
            cfg = DataConfig(dataset="image_folder", root=tmp, image_size=32, workers=workers)
            start = time.perf_counter()
            images[workers] = load_image_folder(cfg).train.images
            times[workers] = time.perf_counter() - start
    assert torch.equal(images[1], images[args.workers])
    print(f"{args.images} JPEGs of {args.side}x{args.side} -> 32x32 on {os.cpu_count()} cores")
    for workers, seconds in times.items():
        print(f"  workers={workers}: {seconds:.2f} s ({args.images / seconds:.0f} images/s)")
    print(f"  speed-up: {times[1] / times[args.workers]:.2f}x")


if __name__ == "__main__":
    main()

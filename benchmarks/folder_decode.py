"""Image-folder loading, side by side in one run: one decoding thread against `[data] workers` threads, a
second load from the decoded cache (memory-mapped) against decoding, and the memory a pass over the data costs
when its images come from the memory map or from an in-memory array.

    python benchmarks/folder_decode.py [--images 20000] [--side 64] [--size 64] [--workers 2]

Writes a folder of random JPEGs (two classes), loads it once per setting and prints the wall time of each and
the ratios; the images must come out identical every way. Memory: a fresh process loads the folder (from the
cache, or decoded into memory with `cache_decoded = false`) and runs the raw view and a small convolution over
every batch of 256, as an epoch does; it reports its peak resident memory and its anonymous (not file-backed,
not reclaimable) memory at the end (Linux: /proc/self/status and smaps_rollup).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

import numpy as np
from PIL import Image

# torch and the toolkit are imported inside the functions: decoding processes start with `spawn`, which
# imports this file again in each of them, and a top-level `import torch` would cost seconds per process.


def write_folder(root: Path, n: int, side: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / f"class{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(folder / f"{i:06d}.jpg", quality=90)


def timed_load(root: str, size: int, workers: int, cache: bool) -> tuple[float, "torch.Tensor"]:
    from toolkit.data.config import DataConfig
    from toolkit.data.image_folder import load_image_folder

    cfg = DataConfig(dataset="image_folder", root=root, image_size=size, workers=workers, cache_decoded=cache)
    start = time.perf_counter()
    images = load_image_folder(cfg).train.images
    return time.perf_counter() - start, images


def _anonymous_mib() -> float:
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        if line.startswith("Anonymous:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(root: str, size: int, cache: bool) -> None:
    """One pass over every batch of the folder's images (raw view, a convolution); prints memory as JSON."""
    import torch

    from toolkit.data.config import DataConfig
    from toolkit.data.image_folder import load_image_folder
    from toolkit.data.views import BatchView

    torch.set_num_threads(1)
    baseline = _anonymous_mib()
    images = load_image_folder(DataConfig(dataset="image_folder", root=root, image_size=size, cache_decoded=cache)
                               ).train.images
    view = BatchView(None, [0.5] * 3, [0.25] * 3)
    conv = torch.nn.Conv2d(3, 8, 3, stride=2)
    with torch.no_grad():
        for start in range(0, len(images), 256):
            conv(view(images[start:start + 256]))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"peak_rss_mib": peak, "anonymous_mib": _anonymous_mib() - baseline}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--side", type=int, default=64)
    parser.add_argument("--size", type=int, default=64, help="the side images are resized to")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--child", choices=["cache", "memory"], help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.root, args.size, args.child == "cache")
        return
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TOOLKIT_CACHE_DIR"] = f"{tmp}/cache"
        root = f"{tmp}/folder"
        write_folder(Path(root), args.images, args.side)
        one, reference = timed_load(root, args.size, 1, cache=False)
        many, threaded = timed_load(root, args.size, args.workers, cache=False)
        first, decoded = timed_load(root, args.size, args.workers, cache=True)
        second, mapped = timed_load(root, args.size, args.workers, cache=True)
        for other in (threaded, decoded, mapped):
            assert bool((reference == other).all())
        memory = {}
        for mode in ("memory", "cache"):
            out = subprocess.run([sys.executable, __file__, "--child", mode, "--root", root, "--size", str(args.size)],
                                 capture_output=True, text=True, check=True, env=os.environ)
            memory[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    array_mib = reference.numel() / 2**20
    print(f"{args.images} JPEGs of {args.side}x{args.side} -> {args.size}x{args.size} ({array_mib:.0f} MiB as uint8) "
          f"on {os.cpu_count()} cores")
    rate = args.images
    print(f"  decode, 1 process:               {one:6.2f} s ({rate / one:7.0f} images/s)")
    print(f"  decode, {args.workers} processes:             {many:6.2f} s ({rate / many:7.0f} images/s)  "
          f"{one / many:.2f}x")
    print(f"  decode into the cache (first):   {first:6.2f} s ({rate / first:7.0f} images/s)")
    print(f"  load from the cache (second):    {second:6.2f} s ({rate / second:7.0f} images/s)  "
          f"{many / second:.1f}x the parallel decode")
    for mode, name in (("memory", "in-memory array"), ("cache", "memory map")):
        m = memory[mode]
        print(f"  one pass from the {name:<16} peak RSS {m['peak_rss_mib']:6.0f} MiB, anonymous "
              f"{m['anonymous_mib']:6.0f} MiB")


if __name__ == "__main__":
    main()

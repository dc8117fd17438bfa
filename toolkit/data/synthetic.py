"""Generated labelled images of any size and class count: learnable clusters with no files needed.

Each class owns a random smooth template (low-frequency noise upsampled); a sample is its class
template, circularly shifted by up to 20% of the side, with per-sample, per-channel contrast, a
brightness offset and pixel noise, so k-means on raw pixels only partly recovers the classes.
The data (not only the split) depends on `seed`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from toolkit.data.base import DataSplits, ImageData
from toolkit.data.config import DataConfig


def make_synthetic(
    num_samples: int, num_classes: int, size: int, channels: int, seed: int = 0, noise: float = 0.15
) -> ImageData:
    """Balanced classes (labels cycle 0..K-1, then shuffled), deterministic given `seed`."""
    g = torch.Generator().manual_seed(seed)
    grid = max(2, size // 4)
    coarse = torch.rand((num_classes, channels, grid, grid), generator=g)
    templates = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    lo = templates.amin(dim=(1, 2, 3), keepdim=True)
    hi = templates.amax(dim=(1, 2, 3), keepdim=True)
    templates = 0.15 + 0.7 * (templates - lo) / (hi - lo).clamp_min(1e-6)  # full contrast per class

    labels = torch.arange(num_samples) % num_classes
    labels = labels[torch.randperm(num_samples, generator=g)]
    x = templates[labels]
    max_shift = max(1, round(0.2 * size))
    shifts = torch.randint(-max_shift, max_shift + 1, (num_samples, 2), generator=g)
    x = torch.stack([torch.roll(img, (int(dy), int(dx)), dims=(1, 2)) for img, (dy, dx) in zip(x, shifts)])
    contrast = 0.7 + 0.6 * torch.rand((num_samples, channels, 1, 1), generator=g)
    brightness = 0.1 * (torch.rand((num_samples, 1, 1, 1), generator=g) - 0.5)
    x = (x - 0.5) * contrast + 0.5 + brightness
    x = x + noise * torch.randn(x.shape, generator=g)
    images = (x * 255.0).round().clamp(0, 255).to(torch.uint8)
    names = [f"class_{k}" for k in range(num_classes)]
    return ImageData(images, labels.numpy().astype(np.int64), "synthetic", names)


#: (train images, test images, classes, side) of the data sets paper recipes use; 0 test images: one part
#: (ImageNet subsets are used whole). STL-10 without its 100,000 unlabelled images.
SHAPES: dict[str, tuple[int, int, int, int]] = {
    "cifar10": (50_000, 10_000, 10, 32), "cifar20": (50_000, 10_000, 20, 32), "cifar100": (50_000, 10_000, 100, 32),
    "stl10": (5_000, 8_000, 10, 96), "imagenet10": (13_000, 0, 10, 96), "imagenet_dogs": (19_500, 0, 15, 96),
    "tiny_imagenet": (100_000, 0, 200, 64),
}


def make_shaped(num_samples: int, num_classes: int, size: int, channels: int, seed: int = 0,
                chunk: int = 4096) -> ImageData:
    """Cheap labelled images at any scale: a smooth template per class plus pixel noise, made chunk by chunk
    into one uint8 tensor (memory: the result; time: seconds for CIFAR-10's 60,000). What a rehearsal needs is
    the shape, not a hard clustering problem."""
    g = torch.Generator().manual_seed(seed)
    grid = max(2, size // 4)
    coarse = torch.rand((num_classes, channels, grid, grid), generator=g)
    templates = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False) * 200 + 28
    labels = (torch.arange(num_samples) % num_classes)[torch.randperm(num_samples, generator=g)]
    images = torch.empty((num_samples, channels, size, size), dtype=torch.uint8)
    for start in range(0, num_samples, chunk):
        part = labels[start:start + chunk]
        noise = torch.randint(-28, 28, (len(part), channels, size, size), generator=g, dtype=torch.int16)
        images[start:start + chunk] = (templates[part].to(torch.int16) + noise).clamp(0, 255).to(torch.uint8)
    return ImageData(images, labels.numpy().astype(np.int64), "synthetic",
                     [f"class_{k}" for k in range(num_classes)])


def load_synthetic(cfg: DataConfig, seed: int = 0) -> DataSplits:
    """The recipe's synthetic set as one part (the split protocol splits it by `test_fraction`), or, with
    `synthetic_like`, a named data set's parts at their real sizes."""
    if cfg.synthetic_like is not None:
        train, test, k, side = SHAPES[cfg.synthetic_like]
        side = cfg.image_size or side  # made at the recipe's size: no resize of a large array afterwards
        data = make_shaped(train + test, k, side, cfg.channels or 3, seed)
        if not test:
            return DataSplits(data, None)
        return DataSplits(data.subset(np.arange(train)), data.subset(np.arange(train, train + test)))
    data = make_synthetic(cfg.num_samples, cfg.num_classes, cfg.synthetic_size, cfg.synthetic_channels, seed)
    return DataSplits(data, None)

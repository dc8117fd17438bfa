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


def load_synthetic(cfg: DataConfig, seed: int = 0) -> DataSplits:
    """The recipe's synthetic set as one part; the split protocol splits it by `test_fraction`."""
    data = make_synthetic(cfg.num_samples, cfg.num_classes, cfg.synthetic_size, cfg.synthetic_channels, seed)
    return DataSplits(data, None)

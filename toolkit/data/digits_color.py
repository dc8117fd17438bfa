"""scikit-learn's digits as 32x32 RGB with a random foreground and background colour per image.

Colour is a nuisance a clusterer must ignore: the digit shape is the class. Colours come from a fixed seed,
so the data set is the same for every run seed; foreground and background differ in luminance by at least
`MIN_LUMA_GAP` so every digit stays visible.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from toolkit.data.base import DataSplits, ImageData
from toolkit.data.config import DataConfig

SIZE = 32
COLOUR_SEED = 8_032
MIN_LUMA_GAP = 0.3
_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R 601, as convert_channels uses


def colour_pairs(n: int, rng: np.random.Generator, min_gap: float = MIN_LUMA_GAP) -> tuple[np.ndarray, np.ndarray]:
    """`n` (foreground, background) RGB pairs in [0, 1], redrawn until their luminances differ by `min_gap`."""
    fg, bg = rng.random((n, 3)), rng.random((n, 3))
    bad = np.abs((fg - bg) @ _LUMA) < min_gap
    while bad.any():
        m = int(bad.sum())
        fg[bad], bg[bad] = rng.random((m, 3)), rng.random((m, 3))
        bad = np.abs((fg - bg) @ _LUMA) < min_gap
    return fg, bg


def load_digits_color(cfg: DataConfig, seed: int = 0) -> DataSplits:
    """All 1,797 digits as one part; the 8x8 ink (0..16) is upsampled bilinearly and used as the blend weight."""
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    ink = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)  # [N, 1, 8, 8] in [0, 1]
    ink = F.interpolate(ink, size=(SIZE, SIZE), mode="bilinear", align_corners=False).clamp(0, 1)
    fg, bg = colour_pairs(len(ink), np.random.default_rng(COLOUR_SEED))
    fg_t = torch.from_numpy(fg.astype(np.float32)).view(-1, 3, 1, 1)
    bg_t = torch.from_numpy(bg.astype(np.float32)).view(-1, 3, 1, 1)
    rgb = bg_t + ink * (fg_t - bg_t)
    images = (rgb * 255.0).round().clamp(0, 255).to(torch.uint8).contiguous()
    labels = bunch.target.astype(np.int64)
    return DataSplits(ImageData(images, labels, "digits_color", [str(i) for i in range(10)]), None)

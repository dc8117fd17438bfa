"""scikit-learn's 1,797 real 8x8 handwritten digits: a tiny, offline, labelled data set for quick runs."""

from __future__ import annotations

import numpy as np
import torch

from toolkit.data.base import DataSplits, ImageData
from toolkit.data.config import DataConfig


def load_digits(cfg: DataConfig, seed: int = 0) -> DataSplits:
    """All digits as one part (no shipped test split); pixel values 0..16 are scaled to 0..255."""
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    pixels = np.rint(bunch.images.astype(np.float64) * 255.0 / 16.0).clip(0, 255).astype(np.uint8)
    images = torch.from_numpy(pixels).unsqueeze(1).contiguous()  # [N, 1, 8, 8]
    labels = bunch.target.astype(np.int64)
    return DataSplits(ImageData(images, labels, "digits", [str(i) for i in range(10)]), None)

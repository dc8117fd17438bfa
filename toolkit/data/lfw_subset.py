"""scikit-image's LFW subset: 200 real 25x25 grey crops, 100 faces then 100 non-faces (2 classes).

A tiny, offline, real two-class set (shipped in the scikit-image wheel) for face-vs-background clustering.
"""

from __future__ import annotations

import numpy as np
import torch

from toolkit.data.base import DataSplits, ImageData
from toolkit.data.config import DataConfig
from toolkit.data.skimage_data import skimage_data

CLASS_NAMES = ["face", "non-face"]


def load_lfw_subset(cfg: DataConfig, seed: int = 0) -> DataSplits:
    """All 200 images as one part; skimage gives floats in [0, 1] (or uint8), stored as uint8 [N, 1, 25, 25]."""
    raw = np.asarray(skimage_data("lfw_subset").lfw_subset())
    if raw.dtype != np.uint8:
        raw = np.rint(raw.astype(np.float64) * 255.0).clip(0, 255).astype(np.uint8)
    half = len(raw) // 2  # skimage documents the first half as faces, the second as non-faces
    labels = np.repeat(np.array([0, 1], dtype=np.int64), [half, len(raw) - half])
    images = torch.from_numpy(raw).unsqueeze(1).contiguous()
    return DataSplits(ImageData(images, labels, "lfw_subset", list(CLASS_NAMES)), None)

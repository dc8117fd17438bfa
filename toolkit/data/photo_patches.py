"""Random 32x32 RGB crops of scikit-image's bundled photos; the class is the photo a crop came from.

Real texture and colour statistics with no download: every photo used is inside the scikit-image wheel.
The set is fixed (`CROPS_PER_CLASS` crops per photo from `CROP_SEED`), independent of the run seed and of
`[data] num_samples` (a synthetic-data knob), so results are comparable across runs. Grey photos are
repeated to three channels.
"""

from __future__ import annotations

import numpy as np
import torch

from toolkit.data.base import DataSplits, ImageData
from toolkit.data.config import DataConfig
from toolkit.data.skimage_data import skimage_data

#: skimage.data functions that read a file shipped in the wheel (checked with the network blocked).
PHOTOS = ("brick", "grass", "gravel", "coffee", "chelsea", "astronaut", "rocket", "camera", "coins", "moon")
CROP = 32
CROPS_PER_CLASS = 300
CROP_SEED = 3_232


def _rgb(photo: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3] from a grey [H, W] or RGB(A) [H, W, C] photo."""
    photo = np.asarray(photo, dtype=np.uint8)
    if photo.ndim == 2:
        return np.repeat(photo[:, :, None], 3, axis=2)
    return photo[:, :, :3]


def load_photo_patches(cfg: DataConfig, seed: int = 0) -> DataSplits:
    """`CROPS_PER_CLASS` crops of each photo in `PHOTOS`, labels in that order, as one part."""
    data = skimage_data("photo_patches")
    rng = np.random.default_rng(CROP_SEED)
    crops, labels = [], []
    for label, name in enumerate(PHOTOS):
        photo = _rgb(getattr(data, name)())
        h, w = photo.shape[:2]
        ys = rng.integers(0, h - CROP + 1, CROPS_PER_CLASS)
        xs = rng.integers(0, w - CROP + 1, CROPS_PER_CLASS)
        crops.extend(photo[y : y + CROP, x : x + CROP] for y, x in zip(ys, xs))
        labels.append(np.full(CROPS_PER_CLASS, label, dtype=np.int64))
    images = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous()  # [N, 3, 32, 32]
    return DataSplits(ImageData(images, np.concatenate(labels), "photo_patches", list(PHOTOS)), None)

"""STL-10 (labelled 5,000 train + 8,000 test 96x96 images) from the official binary files.

The unlabelled 100,000-image file is not read: clustering benchmarks (SCAN, CDC) use the labelled parts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from toolkit.data.base import DataSplits, ImageData
from toolkit.data.cifar import ensure_files
from toolkit.data.config import DataConfig
from toolkit.errors import UserError

STL10_CLASSES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
_STL10 = {
    "folder": "stl10_binary",
    "url": "http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz",
    "md5": "91f7769df0f17e558f3565bffb0c7dfb",
}
_SIDE = 96


def read_stl_images(path: Path) -> torch.Tensor:
    """Each image is 3 channel planes stored column-major; return uint8 [n, 3, 96, 96] row-major."""
    raw = np.fromfile(path, dtype=np.uint8)
    per_image = 3 * _SIDE * _SIDE
    if raw.size % per_image:
        raise UserError(f"{path}: size {raw.size} bytes is not a multiple of {per_image} (3x96x96)")
    arr = raw.reshape(-1, 3, _SIDE, _SIDE).transpose(0, 1, 3, 2)  # [n, c, x, y] -> [n, c, y, x]
    return torch.from_numpy(np.ascontiguousarray(arr))


def read_stl_labels(path: Path, count: int) -> np.ndarray:
    """Labels are bytes 1..10 on disk; returned as int64 0..9."""
    labels = np.fromfile(path, dtype=np.uint8).astype(np.int64) - 1
    if len(labels) != count:
        raise UserError(f"{path}: {len(labels)} labels for {count} images")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise UserError(f"{path}: labels must lie in 1..10")
    return labels


def _class_names(path: Path) -> list[str]:
    if not path.is_file():
        return list(STL10_CLASSES)
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return names if len(names) == 10 else list(STL10_CLASSES)


def load_stl10(cfg: DataConfig, seed: int = 0) -> DataSplits:
    """STL-10 train and test parts with their labels (the protocol decides whether to merge them)."""
    root = Path(cfg.root or "./data").expanduser().resolve()
    folder = root / _STL10["folder"]
    names = ["train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin"]
    ensure_files("stl10", root, [folder / n for n in names], _STL10, cfg.download)
    classes = _class_names(folder / "class_names.txt")
    parts = []
    for split in ("train", "test"):
        images = read_stl_images(folder / f"{split}_X.bin")
        labels = read_stl_labels(folder / f"{split}_y.bin", len(images))
        parts.append(ImageData(images, labels, "stl10", classes))
    return DataSplits(parts[0], parts[1])

"""Data set names -> loaders, and `load_data`, which applies the evaluation protocol and image shaping.

A loader returns the data set's natural parts: `DataSplits(train, test)` where the data set ships a
test part (CIFAR, STL-10, image folders with train/ and test/), else `DataSplits(all, None)`.
The protocol is applied here, once, so every data set follows the same rules.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F

from toolkit.data.base import DataSplits, ImageData
from toolkit.data.cifar import load_cifar10, load_cifar20
from toolkit.data.config import DataConfig
from toolkit.data.digits import load_digits
from toolkit.data.digits_color import load_digits_color
from toolkit.data.image_folder import load_image_folder
from toolkit.data.lfw_subset import load_lfw_subset
from toolkit.data.long_tail import make_long_tailed
from toolkit.data.photo_patches import load_photo_patches
from toolkit.data.stl10 import load_stl10
from toolkit.data.synthetic import load_synthetic

Loader = Callable[[DataConfig, int], DataSplits]
Protocol = Literal["transductive", "split"]

DATASETS: dict[str, Loader] = {
    "digits": load_digits,
    "digits_color": load_digits_color,
    "photo_patches": load_photo_patches,
    "lfw_subset": load_lfw_subset,
    "synthetic": load_synthetic,
    "cifar10": load_cifar10,
    "cifar20": load_cifar20,
    "stl10": load_stl10,
    "image_folder": load_image_folder,
}

#: Built-in data sets made in memory, always labelled. `toolkit tune` picks its default metric from this
#: without loading them in the driver (about 1.5 s of a short search's start-up); data sets read from disk
#: are still loaded there, which also stops a search whose files are missing before anything starts.
_LABELLED_IN_MEMORY = {load_digits, load_synthetic, load_digits_color, load_photo_patches, load_lfw_subset}


def labelled_without_loading(name: str) -> bool:
    """True when `name` is (still) a built-in in-memory data set, which always has labels; False: load and look."""
    return DATASETS.get(name) in _LABELLED_IN_MEMORY

# Extension point: data sets from other packages (e.g. an entry-point group such as
# "toolkit.datasets") are added here through `register_dataset` before recipes are validated.


def register_dataset(name: str, loader: Loader, *, replace: bool = False) -> None:
    """Make `loader` available as `[data] dataset = name`; refuses to shadow a name unless `replace`."""
    if name in DATASETS and not replace:
        raise ValueError(f"data set {name!r} is already registered")
    DATASETS[name] = loader


def load_data(cfg: DataConfig, protocol: Protocol, seed: int = 0) -> DataSplits:
    """Load `cfg.dataset` under a protocol.

    "transductive" (CDC/ProPos): all parts merged into `train`, `test` is None.
    "split" (SCAN/GCC): train on `train`, evaluate on `test`; data sets without a shipped test part
    are split by `cfg.test_fraction` (stratified when labels allow), deterministically from `seed`.
    `cfg.long_tail` subsamples each shipped part first, with a fixed seed (same data for every `seed`).
    """
    if protocol not in ("transductive", "split"):
        raise ValueError(f"protocol must be 'transductive' or 'split', got {protocol!r}")
    parts = DATASETS[cfg.dataset](cfg, seed)
    if cfg.long_tail is not None:
        test = None if parts.test is None else make_long_tailed(parts.test, cfg.long_tail, part=1)
        parts = dataclasses.replace(parts, train=make_long_tailed(parts.train, cfg.long_tail, part=0), test=test)
    name = cfg.dataset
    if protocol == "transductive":
        merged = parts.train if parts.test is None else ImageData.concat([parts.train, parts.test], name)
        merged.name = name
        return DataSplits(_shape(merged, cfg), None)
    if parts.test is None:
        parts = split_by_fraction(parts.train, cfg.test_fraction, seed)
    parts.train.name, parts.test.name = f"{name}/train", f"{name}/test"
    return DataSplits(_shape(parts.train, cfg), _shape(parts.test, cfg))


def split_by_fraction(data: ImageData, test_fraction: float, seed: int) -> DataSplits:
    """Deterministic train/test split; stratified by label when every class can appear on both sides."""
    from sklearn.model_selection import train_test_split

    n = len(data)
    n_test = int(round(n * test_fraction))
    if n_test < 1 or n_test >= n:
        raise ValueError(f"{data.name}: test_fraction {test_fraction} leaves an empty part of {n} images")
    stratify = None
    if data.labels is not None:
        counts = np.bincount(data.labels)
        counts = counts[counts > 0]
        if counts.min() >= 2 and len(counts) <= min(n_test, n - n_test):
            stratify = data.labels
    train_idx, test_idx = train_test_split(
        np.arange(n), test_size=n_test, random_state=seed, stratify=stratify
    )
    return DataSplits(data.subset(np.sort(train_idx)), data.subset(np.sort(test_idx)))


def _shape(data: ImageData, cfg: DataConfig) -> ImageData:
    """Apply the recipe's channel count and square image size; uint8 in, uint8 out."""
    images = data.images
    if cfg.channels is not None:
        images = convert_channels(images, cfg.channels)
    if cfg.image_size is not None:
        images = resize_uint8(images, cfg.image_size)
    if images is data.images:
        return data
    return ImageData(images, data.labels, data.name, data.class_names, list(data.skipped))


def convert_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """Grayscale <-> RGB on uint8 [N, C, H, W]; RGB to gray uses ITU-R 601 luma weights."""
    c = images.shape[1]
    if c == channels:
        return images
    if c == 1 and channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()
    if c == 3 and channels == 1:
        weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        out = torch.empty((images.shape[0], 1, *images.shape[2:]), dtype=torch.uint8)
        for start in range(0, len(images), 4096):
            chunk = images[start : start + 4096].float()
            out[start : start + 4096] = (chunk * weights).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
        return out
    raise ValueError(f"cannot convert {c}-channel images to {channels} channels")


def resize_uint8(images: torch.Tensor, size: int, chunk: int = 1024) -> torch.Tensor:
    """Antialiased bilinear resize to size x size, in chunks so big data sets fit in memory."""
    if tuple(images.shape[2:]) == (size, size):
        return images
    out = torch.empty((images.shape[0], images.shape[1], size, size), dtype=torch.uint8)
    for start in range(0, len(images), chunk):
        x = images[start : start + chunk].float()
        y = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        out[start : start + chunk] = y.round().clamp(0, 255).to(torch.uint8)
    return out

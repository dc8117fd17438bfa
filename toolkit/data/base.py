"""The in-memory image container every data set loader returns."""

from __future__ import annotations

import hashlib
from typing import Any
from dataclasses import dataclass, field

import numpy as np
import torch


class ImageShape:
    """Size, channels and resolution of an `images` tensor [N, C, H, W] (shared by labeled and unlabeled sets)."""

    images: torch.Tensor

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def channels(self) -> int:
        """Colour channels per image: 1 (grey) or 3 (RGB)."""
        return int(self.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) in pixels, the same for every image of the set."""
        return int(self.images.shape[2]), int(self.images.shape[3])


@dataclass
class ImageData(ImageShape):
    """Images as a uint8 tensor [N, C, H, W]; labels (int64 [N]) only where ground truth exists.

    Labels are for evaluation: the engine never hands them to a plugin during training. `skipped` lists
    files a loader found but could not read and left out, so a command can say how many were lost.
    """

    images: torch.Tensor
    labels: np.ndarray | None
    name: str
    class_names: list[str] | None = None
    skipped: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"{self.name}: images must be uint8 [N, C, H, W], got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels is not None:
            self.labels = np.asarray(self.labels, dtype=np.int64)
            if len(self.labels) != len(self.images):
                raise ValueError(f"{self.name}: {len(self.images)} images but {len(self.labels)} labels")

    @property
    def num_classes(self) -> int | None:
        if self.class_names:
            return len(self.class_names)
        if self.labels is None:
            return None
        return int(self.labels.max()) + 1

    def fingerprint(self) -> str:
        """Content hash of the images (not the labels): keys cached backbones, recorded with each run.
        Computed once per object (it reads every byte); the images are not changed in place after loading."""
        cached = self.__dict__.get("_fingerprint")
        if cached is None or cached[0] is not self.images:
            h = hashlib.sha256()
            h.update(str(tuple(self.images.shape)).encode())
            array = self.images.contiguous().numpy()
            for start in range(0, len(array), 4096):  # in chunks: a memory-mapped folder is never copied whole
                h.update(memoryview(np.ascontiguousarray(array[start:start + 4096])).cast("B"))
            cached = self.__dict__["_fingerprint"] = (self.images, h.hexdigest()[:16])
        return cached[1]

    def subset(self, index: np.ndarray, name: str | None = None) -> "ImageData":
        idx = torch.as_tensor(np.asarray(index), dtype=torch.long)
        labels = None if self.labels is None else self.labels[np.asarray(index)]
        return ImageData(self.images[idx], labels, name or self.name, self.class_names, list(self.skipped))

    @staticmethod
    def concat(parts: list["ImageData"], name: str) -> "ImageData":
        images = torch.cat([p.images for p in parts])
        labels = None if any(p.labels is None for p in parts) else np.concatenate([p.labels for p in parts])
        return ImageData(images, labels, name, parts[0].class_names, [s for p in parts for s in p.skipped])


@dataclass
class DataSplits:
    """What a loader returns: the set to train on and, under the split protocol, a held-out test set."""

    train: ImageData
    test: ImageData | None = None


def data_facts(n: int, n_eval: int, k: int, image_size: tuple[int, int], channels: int,
               content_hash: str) -> dict[str, Any]:
    """The loaded data as a run saw it, for its record (K 0 means "auto": estimated later and logged then)."""
    return {"num_images": n, "num_eval_images": n_eval, "num_clusters": k if k else "auto",
            "image_size": f"{image_size[0]}x{image_size[1]}", "channels": channels, "content_hash": content_hash}

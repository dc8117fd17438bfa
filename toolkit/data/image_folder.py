"""Any folder of images: `root/<class>/*.png` (labelled by sorted folder name) or a flat folder (unlabelled).

With `root/train` and `root/test` both present they are the shipped split. All images are loaded
into memory at one size (`image_size`, else the first image's size) and one channel count.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from toolkit.data.base import DataSplits, ImageData
from toolkit.data.config import DataConfig
from toolkit.errors import DataNotFoundError, UserError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def _images_under(folder: Path) -> list[Path]:
    return sorted((p for p in folder.rglob("*") if _is_image(p)), key=lambda p: p.relative_to(folder).as_posix())


def _class_folders(folder: Path) -> list[Path]:
    return sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".") and _images_under(d))


def _scan(folder: Path, labelled: bool) -> tuple[list[Path], dict[str, list[Path]] | None]:
    """Files of one part: (all files, {class: files}) with classes, (all files, None) without."""
    classes = _class_folders(folder) if labelled else []
    loose = sorted(p for p in folder.iterdir() if _is_image(p))
    if not classes:
        files = _images_under(folder)
        return files, None
    if loose:
        raise UserError(
            f"{folder}: has both class sub-folders and loose images (e.g. {loose[0].name}); "
            "move the loose images into a class folder or set `[data] labels = false`"
        )
    by_class = {d.name: _images_under(d) for d in classes}
    return [f for files in by_class.values() for f in files], by_class


def _probe(path: Path) -> tuple[tuple[int, int], bool]:
    """(height, width) and whether the image is colour, from the header only."""
    try:
        with Image.open(path) as im:
            return (im.height, im.width), im.mode not in _GRAY_MODES
    except (UnidentifiedImageError, OSError) as exc:
        raise UserError(f"{path}: cannot read image ({exc})") from None


def _read(path: Path, size: tuple[int, int], channels: int) -> np.ndarray:
    """One image as uint8 [C, H, W] at `size` (H, W)."""
    try:
        with Image.open(path) as im:
            im = im.convert("L" if channels == 1 else "RGB")
            if (im.height, im.width) != size:
                im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as exc:
        raise UserError(f"{path}: cannot read image ({exc})") from None
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def _build(files: list[Path], size: tuple[int, int], channels: int) -> torch.Tensor:
    images = np.empty((len(files), channels, *size), dtype=np.uint8)
    for i, path in enumerate(files):
        images[i] = _read(path, size, channels)
    return torch.from_numpy(images)


def load_image_folder(cfg: DataConfig, seed: int = 0) -> DataSplits:
    """Load `cfg.root`; labels from class sub-folders unless `cfg.labels` is false or the folder is flat."""
    if not cfg.root:
        raise UserError("data set 'image_folder' needs `[data] root`")
    root = Path(cfg.root).expanduser().resolve()
    if not root.is_dir():
        raise DataNotFoundError(f"image_folder: folder not found: {root}; pass --set data.root=DIR")
    split_dirs = [root / "train", root / "test"]
    folders = split_dirs if all(d.is_dir() for d in split_dirs) else [root]
    scans = [_scan(folder, cfg.labels) for folder in folders]
    for folder, (files, _) in zip(folders, scans):
        if not files:
            suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
            raise DataNotFoundError(f"image_folder: no images ({suffixes}) found under {folder}")

    labelled = all(by_class is not None for _, by_class in scans)
    class_names = sorted({c for _, by_class in scans for c in (by_class or {})}) if labelled else None
    all_files = [f for files, _ in scans for f in files]
    probes = [_probe(f) for f in all_files]
    size = (cfg.image_size, cfg.image_size) if cfg.image_size else probes[0][0]
    channels = cfg.channels or (3 if any(colour for _, colour in probes) else 1)

    parts = []
    for files, by_class in scans:
        images = _build(files, size, channels)
        labels = None
        if labelled and by_class is not None and class_names is not None:
            index = {c: k for k, c in enumerate(class_names)}
            labels = np.concatenate([np.full(len(v), index[c], dtype=np.int64) for c, v in by_class.items()])
        parts.append(ImageData(images, labels, "image_folder", class_names))
    return DataSplits(parts[0], parts[1] if len(parts) > 1 else None)


def list_images(folder: Path) -> list[Path]:
    """Every image file under `folder` (recursively), in a stable order."""
    return _images_under(Path(folder))


def read_images(files: list[Path], size: tuple[int, int], channels: int) -> torch.Tensor:
    """uint8 [N, C, H, W] of `files`, resized to `size` and converted to `channels`."""
    return _build(files, size, channels)

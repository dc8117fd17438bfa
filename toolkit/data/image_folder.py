"""Any folder of images: `root/<class>/*.png` (labelled by sorted folder name) or a flat folder (unlabelled).

With `root/train` and `root/test` both present they are the shipped split. All images are loaded
into memory at one size (`image_size`, else the first image's size) and one channel count.

Real folders are messy, so: PNG, JPEG, BMP, WebP and TIFF are read in any Pillow mode (see `to_uint8`
for how 16-bit, float and transparent images become uint8); other files and hidden files or folders are
ignored; a file Pillow cannot read is skipped with one warning naming it and listed in
`ImageData.skipped`, or stops the load with a `UserError` under `[data] strict = true`.
"""

from __future__ import annotations

import multiprocessing
import os
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path

import numpy as np
import torch

from toolkit.data import folder_cache
from toolkit.data.base import DataSplits, ImageData
from toolkit.data.config import DataConfig
from toolkit.data.pixels import (DECODE_ERRORS, Probe, Size, probe, read_chunk, read_file, reason, stacked,
                                 to_uint8)
from toolkit.errors import DataNotFoundError, UserError

__all__ = ["IMAGE_SUFFIXES", "load_image_folder", "list_images", "read_images", "to_uint8"]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
#: Files per task of a decoding process, and the fewest files worth starting processes for.
_TASK, _PROCESS_MIN = 256, 512


# ---- finding files ----------------------------------------------------------------------------


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def _images_under(folder: Path) -> list[Path]:
    """Image files under `folder`, recursively, in the order of their relative paths; hidden files and anything
    inside hidden folders (`.DS_Store`, `._x.jpg`, `.thumbnails/`) left out. One os.walk with string checks:
    a second load of a 20,000-file folder from the decoded cache is mostly this scan."""
    found: list[tuple[str, Path]] = []
    seen: set[str] = set()  # real paths walked: a symlink back up the tree must not loop
    for current, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(current)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        relative = os.path.relpath(current, folder)
        prefix = "" if relative == "." else relative.replace(os.sep, "/") + "/"
        for name in files:
            if name.startswith(".") or os.path.splitext(name)[1].lower() not in IMAGE_SUFFIXES:
                continue
            path = os.path.join(current, name)
            if os.path.isfile(path):
                found.append((prefix + name, path))
    found.sort(key=lambda item: item[0])
    return [Path(path) for _, path in found]


def _scan(folder: Path, labelled: bool) -> tuple[list[Path], dict[str, list[Path]] | None]:
    """Files of one part: (all files, {class: files}) with classes, (all files, None) without."""
    subfolders = sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")) if labelled else []
    by_class = {d.name: files for d in subfolders if (files := _images_under(d))}
    loose = sorted(p for p in folder.iterdir() if _is_image(p))
    if not by_class:
        return _images_under(folder), None
    if loose:
        raise UserError(
            f"{folder}: has both class sub-folders and loose images (e.g. {loose[0].name}); "
            "move the loose images into a class folder or set `[data] labels = false`"
        )
    return [f for files in by_class.values() for f in files], by_class


# ---- reading files, skipping the unreadable ones ----------------------------------------------


@dataclass
class _Unreadable:
    """Where unreadable files go: a warning and a note in `skipped`, or (strict) a one-line UserError."""

    strict: bool
    skipped: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    def report(self, path: Path, why: str) -> None:
        message = f"{path}: cannot read image ({why})"
        if self.strict:
            raise UserError(message) from None
        warnings.warn(f"{message}; skipped", UserWarning, stacklevel=2)
        self.skipped.append(str(path))
        self.messages.append(message)


def decode_workers(setting: int | None) -> int:
    """`[data] workers`: processes decoding images (None: one per core)."""
    return max(1, setting if setting is not None else (os.cpu_count() or 1))


def _decoded(files: list[Path], size: Size, channels: int, workers: int,  # noqa: ANN202 - an iterator
             backend: str = "processes"):
    """(readable images stacked, [(offset, reason)] of the unreadable ones) per block of consecutive files, in
    file order. With several workers and enough files, decoded by worker processes (numpy and Pillow only, so
    they start fast), each block coming back as one buffer: for small files the per-file Python work holds the
    GIL and threads gained nothing (benchmarks/folder_decode.py)."""
    tasks = [files[i:i + _TASK] for i in range(0, len(files), _TASK)]
    if backend == "ray":  # [data] decode = "ray": the blocks fan out over a Ray cluster
        from toolkit.data.ray_decode import decoded_blocks

        yield from decoded_blocks(tasks, size, channels)
        return
    if workers <= 1 or len(files) < _PROCESS_MIN:
        for task in tasks:
            yield _read_here(task, size, channels)
        return
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        yield from pool.map(read_chunk, [[str(f) for f in task] for task in tasks], repeat(size), repeat(channels))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # strict stops at the first unreadable file: drop the rest


def _read_here(files: list[Path], size: Size, channels: int) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """read_chunk in this process (through this module's `read_file`, which tests may count)."""
    return stacked([read_file(path, size, channels) for path in files], size, channels)


def _build(files: list[Path], size: Size, channels: int, unreadable: _Unreadable,
           workers: int = 1, out: np.ndarray | None = None, backend: str = "processes") -> tuple[torch.Tensor, list[int]]:
    """uint8 [N, C, H, W] of the files that could be read, and their positions in `files`; decoded by
    `workers` processes into `out` (e.g. a memory-mapped file; default a new array), unreadable files
    reported in file order (so `strict` stops at the first one)."""
    images = np.empty((len(files), channels, *size), dtype=np.uint8) if out is None else out
    kept: list[int] = []
    start = 0
    for block, failures in _decoded(files, size, channels, workers, backend):
        bad = {offset for offset, _ in failures}
        for offset, why in failures:
            unreadable.report(files[start + offset], why)
        images[len(kept):len(kept) + len(block)] = block
        kept += [start + i for i in range(len(block) + len(bad)) if i not in bad]
        start += len(block) + len(bad)
    return torch.from_numpy(images[: len(kept)]), kept


@dataclass
class _Part:
    """One folder (all of root, or train/ or test/): the files whose header could be read, and their labels."""

    folder: Path
    files: list[Path]
    probes: list[Probe]
    labels: np.ndarray | None
    unreadable: _Unreadable
    positions: list[int]  # of `files` in the folder's scanned list


def _require_readable(part: _Part, kept: int) -> None:
    if not kept:
        raise DataNotFoundError(
            f"image_folder: none of the images under {part.folder} could be read "
            f"({len(part.unreadable.skipped)} unreadable, e.g. {part.unreadable.skipped[0]})"
        )


def _probe_part(folder: Path, files: list[Path], labels: np.ndarray | None, strict: bool) -> _Part:
    unreadable = _Unreadable(strict)
    kept: list[int] = []
    probes: list[Probe] = []
    for i, path in enumerate(files):
        try:
            probes.append(probe(path))
        except DECODE_ERRORS as exc:
            unreadable.report(path, reason(exc))
            continue
        kept.append(i)
    part = _Part(folder, [files[i] for i in kept], probes, None if labels is None else labels[kept], unreadable,
                 kept)
    _require_readable(part, len(kept))
    return part


def _load_part(part: _Part, size: Size, channels: int, class_names: list[str] | None, workers: int,
               out: np.ndarray | None = None, backend: str = "processes") -> tuple[ImageData, list[int]]:
    """The part's readable images (into `out` when given) and their positions in the folder's scanned list."""
    images, kept = _build(part.files, size, channels, part.unreadable, workers, out, backend)
    _require_readable(part, len(kept))
    labels = None if part.labels is None else part.labels[kept]
    data = ImageData(images, labels, "image_folder", class_names, skipped=part.unreadable.skipped)
    return data, [part.positions[i] for i in kept]


def _file_labels(by_class: dict[str, list[Path]], index: dict[str, int]) -> np.ndarray:
    return np.concatenate([np.full(len(v), index[c], dtype=np.int64) for c, v in by_class.items()])


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
    index = {c: k for k, c in enumerate(class_names or [])}
    labels = [_file_labels(by_class, index) if labelled and by_class else None for _, by_class in scans]
    if not cfg.cache_decoded:
        return _splits([d for d, _ in _decode(cfg, folders, scans, labels, class_names)])
    settings = {"image_size": cfg.image_size, "channels": cfg.channels, "strict": cfg.strict, "labels": labelled}
    key = folder_cache.folder_key(root, [files for files, _ in scans], settings)
    with folder_cache.lock(key):  # a concurrent run of the same folder waits, then reads what this one wrote
        cached = folder_cache.read(key)
        decoded_now = cached is None
        if decoded_now:  # decoding warns about unreadable files itself
            _decode(cfg, folders, scans, labels, class_names, key)
            cached = folder_cache.read(key)
    assert cached is not None
    loaded = []
    for part, part_labels in zip(cached[1], labels):
        if not decoded_now:
            part.warn_again()
        loaded.append(ImageData(torch.from_numpy(part.images), None if part_labels is None else part_labels[part.kept],
                                "image_folder", class_names, skipped=list(part.skipped)))
    return _splits(loaded)


def _splits(loaded: list[ImageData]) -> DataSplits:
    return DataSplits(loaded[0], loaded[1] if len(loaded) > 1 else None)


def _decode(cfg: DataConfig, folders: list[Path], scans: list, labels: list[np.ndarray | None],
            class_names: list[str] | None, key: str | None = None) -> list[tuple[ImageData, list[int]]]:
    """Probe and decode every part; with a cache `key`, decode into memory-mapped files and commit them."""
    parts = [_probe_part(folder, files, part_labels, cfg.strict)
             for folder, (files, _), part_labels in zip(folders, scans, labels)]
    probes = [probe for part in parts for probe in part.probes]
    size = (cfg.image_size, cfg.image_size) if cfg.image_size else probes[0][0]
    channels = cfg.channels or (3 if any(colour for _, colour in probes) else 1)
    workers = decode_workers(cfg.workers)
    if key is None:
        return [_load_part(part, size, channels, class_names, workers, backend=cfg.decode) for part in parts]
    arrays = [folder_cache.new_array(key, n, (len(part.files), channels, *size)) for n, part in enumerate(parts)]
    try:
        loaded = [_load_part(part, size, channels, class_names, workers, out[0], cfg.decode)
                  for part, out in zip(parts, arrays)]
    except BaseException:
        for _, temporary, _ in arrays:
            temporary.unlink(missing_ok=True)
        raise
    meta = {"size": list(size), "channels": channels,
            "parts": [{"kept": kept, "skipped": part.unreadable.skipped, "messages": part.unreadable.messages}
                      for (_, kept), part in zip(loaded, parts)]}
    folder_cache.commit(key, meta, arrays)
    return loaded


def list_images(folder: Path) -> list[Path]:
    """Every image file under `folder` (recursively, hidden ones left out), in a stable order."""
    return _images_under(Path(folder))


def read_images(files: list[Path], size: tuple[int, int], channels: int, workers: int | None = None) -> torch.Tensor:
    """uint8 [N, C, H, W] of `files`, resized to `size` and converted to `channels` as `to_uint8` describes.

    Every file must be readable (a UserError names the first that is not): `toolkit predict` writes one
    row per file, and silently dropping one would misalign its output.
    """
    return _build(files, size, channels, _Unreadable(strict=True), decode_workers(workers))[0]

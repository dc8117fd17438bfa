"""Any folder of images: `root/<class>/*.png` (labelled by sorted folder name) or a flat folder (unlabelled).

With `root/train` and `root/test` both present they are the shipped split. All images are loaded
into memory at one size (`image_size`, else the first image's size) and one channel count.

Real folders are messy, so: PNG, JPEG, BMP, WebP and TIFF are read in any Pillow mode (see `to_uint8`
for how 16-bit, float and transparent images become uint8); other files and hidden files or folders are
ignored; a file Pillow cannot read is skipped with one warning naming it and listed in
`ImageData.skipped`, or stops the load with a `UserError` under `[data] strict = true`.
"""

from __future__ import annotations

import os
import struct
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from toolkit.data import folder_cache
from toolkit.data.base import DataSplits, ImageData
from toolkit.data.config import DataConfig
from toolkit.errors import DataNotFoundError, UserError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
_GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
_ALPHA_MODES = {"RGBA", "RGBa", "PA"}
_UINT16_MAX = 65535
#: What a broken, truncated or unsupported file makes Pillow (or the conversion of its pixels) raise.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, Image.DecompressionBombError)

Size = tuple[int, int]
Probe = tuple[Size, bool]


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
                found.append((prefix + name, Path(path)))
    found.sort(key=lambda item: item[0])
    return [path for _, path in found]


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


# ---- pixels of any mode to uint8 --------------------------------------------------------------


def _stretch(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map [low, high] linearly onto 0..255 (rounded); a flat image (high <= low) becomes black."""
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (values.astype(np.float64) - low) * (255.0 / (high - low))
    return np.rint(np.clip(scaled, 0, 255)).astype(np.uint8)


def _integers_to_uint8(values: np.ndarray) -> np.ndarray:
    """16-bit range scaled, never clipped: 0..65535 -> 0..255; other integer ranges by their own min/max."""
    values = values.astype(np.int64)
    low, high = int(values.min()), int(values.max())
    if low >= 0 and high <= _UINT16_MAX:
        return _stretch(values, 0, _UINT16_MAX)
    return _stretch(values, low, high)


def _floats_to_uint8(values: np.ndarray) -> np.ndarray:
    """[0, 1] data (the usual float convention) times 255; any other range by its own min/max; NaN/inf -> 0."""
    values = values.astype(np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(values.shape, dtype=np.uint8)
    low, high = float(values[finite].min()), float(values[finite].max())
    if low < 0.0 or high > 1.0:
        values = np.where(finite, values, low)
        return _stretch(values, low, high)
    return _stretch(np.where(finite, values, 0.0), 0.0, 1.0)


def _over_white(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Composite uint8 pixels over a white background, so transparent areas do not show their hidden colour."""
    a = alpha.astype(np.float64) / 255.0
    if colour.ndim == 3:
        a = a[..., None]
    return np.rint(colour * a + 255.0 * (1.0 - a)).astype(np.uint8)


def to_uint8(im: Image.Image) -> np.ndarray:
    """Pixels of an image of any Pillow mode as uint8 [H, W] (grey modes) or [H, W, 3] (everything else).

    Pillow's own `convert("L")` clips 16- and 32-bit values at 255, which turns a 16-bit scan all white,
    so those are scaled here, each image by the same rule so a data set keeps its relative brightness:

    - integer modes ("I;16", "I;16B", "I", ...): value * 255 / 65535 when every value lies in 0..65535
      (16-bit PNG/TIFF data, whatever bit depth the sensor had); otherwise the image's own min..max.
    - float ("F"): values in [0, 1] times 255; any other range is stretched from its own min..max.
    - transparency (RGBA, LA, PA, a palette or grey/RGB image with a transparent colour): composited over
      white, as an image viewer on a white page shows it; dropping alpha would reveal arbitrary hidden colours.
    - the rest (1-bit, L, palette, RGB, CMYK, YCbCr, ...): Pillow's conversion to L or RGB.
    """
    mode = im.mode
    if mode == "I" or mode.startswith("I;16"):
        return _integers_to_uint8(np.asarray(im))
    if mode == "F":
        return _floats_to_uint8(np.asarray(im))
    transparent = mode in _ALPHA_MODES or mode in ("LA", "La") or "transparency" in im.info
    if mode in _GRAY_MODES:
        if transparent:
            grey_alpha = np.asarray(im.convert("LA"))
            return _over_white(grey_alpha[..., 0], grey_alpha[..., 1])
        return np.asarray(im.convert("L"))
    if transparent:
        rgba = np.asarray(im.convert("RGBA"))
        return _over_white(rgba[..., :3], rgba[..., 3])
    return np.asarray(im.convert("RGB"))


def _fit(pixels: np.ndarray, size: Size, channels: int) -> np.ndarray:
    """uint8 [H, W] or [H, W, 3] to uint8 [channels, *size]; colour to grey uses Pillow's ITU-R 601 luma."""
    im = Image.fromarray(pixels)
    if channels == 1 and im.mode != "L":
        im = im.convert("L")
    elif channels == 3 and im.mode != "RGB":
        im = im.convert("RGB")
    if (im.height, im.width) != size:
        im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    arr = np.asarray(im, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


# ---- reading files, skipping the unreadable ones ----------------------------------------------


@dataclass
class _Unreadable:
    """Where unreadable files go: a warning and a note in `skipped`, or (strict) a one-line UserError."""

    strict: bool
    skipped: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    def report(self, path: Path, exc: BaseException) -> None:
        message = f"{path}: cannot read image ({_reason(exc)})"
        if self.strict:
            raise UserError(message) from None
        warnings.warn(f"{message}; skipped", UserWarning, stacklevel=2)
        self.skipped.append(str(path))
        self.messages.append(message)


def _reason(exc: BaseException) -> str:
    """Pillow's complaint on one line; its "cannot identify image file '<path>'" would repeat the path."""
    if isinstance(exc, UnidentifiedImageError):
        return "not an image format Pillow recognises"
    return " ".join(str(exc).split()) or type(exc).__name__


def _probe(path: Path) -> Probe:
    """(height, width) and whether the image is colour, from the header only."""
    with Image.open(path) as im:
        return (im.height, im.width), im.mode not in _GRAY_MODES


def _read(path: Path, size: Size, channels: int) -> np.ndarray:
    """One image as uint8 [C, H, W] at `size` (H, W); decoding it fully is what finds a truncated file."""
    with Image.open(path) as im:
        im.load()
        pixels = to_uint8(im)
    return _fit(pixels, size, channels)


#: Files decoded per round of the thread pool: bounds the decoded images waiting to be copied.
_CHUNK = 1024


def _try_read(path: Path, size: Size, channels: int) -> np.ndarray | BaseException:
    try:
        return _read(path, size, channels)
    except _DECODE_ERRORS as exc:
        return exc


def decode_workers(setting: int | None) -> int:
    """`[data] workers`: threads decoding images (None: one per core). Pillow releases the GIL while it
    decodes and resizes, so threads scale without copying images between processes."""
    return max(1, setting if setting is not None else (os.cpu_count() or 1))


def _build(files: list[Path], size: Size, channels: int, unreadable: _Unreadable,
           workers: int = 1, out: np.ndarray | None = None) -> tuple[torch.Tensor, list[int]]:
    """uint8 [N, C, H, W] of the files that could be read, and their positions in `files`; decoded on
    `workers` threads into `out` (e.g. a memory-mapped file; default a new array), unreadable files
    reported in file order (so `strict` stops at the first one)."""
    images = np.empty((len(files), channels, *size), dtype=np.uint8) if out is None else out
    kept: list[int] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(files), _CHUNK):
            chunk = files[start:start + _CHUNK]
            for offset, result in enumerate(pool.map(lambda f: _try_read(f, size, channels), chunk)):
                if isinstance(result, BaseException):
                    unreadable.report(chunk[offset], result)
                    continue
                images[len(kept)] = result
                kept.append(start + offset)
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
            probes.append(_probe(path))
        except _DECODE_ERRORS as exc:
            unreadable.report(path, exc)
            continue
        kept.append(i)
    part = _Part(folder, [files[i] for i in kept], probes, None if labels is None else labels[kept], unreadable,
                 kept)
    _require_readable(part, len(kept))
    return part


def _load_part(part: _Part, size: Size, channels: int, class_names: list[str] | None, workers: int,
               out: np.ndarray | None = None) -> tuple[ImageData, list[int]]:
    """The part's readable images (into `out` when given) and their positions in the folder's scanned list."""
    images, kept = _build(part.files, size, channels, part.unreadable, workers, out)
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
        return [_load_part(part, size, channels, class_names, workers) for part in parts]
    arrays = [folder_cache.new_array(key, n, (len(part.files), channels, *size)) for n, part in enumerate(parts)]
    try:
        loaded = [_load_part(part, size, channels, class_names, workers, out[0]) for part, out in zip(parts, arrays)]
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

"""Image files to uint8 pixels, without torch: what image-folder decoding runs, in this process or in worker
processes (which then start in a fraction of a second: numpy and Pillow only).

Real folders are messy: `to_uint8` says how 16-bit, float and transparent images become uint8; `read_file`
decodes one file at a size and channel count, or returns why it cannot (a one-line reason), and
`read_chunk` does that for a list of files (a worker process's task).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

_GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
_ALPHA_MODES = {"RGBA", "RGBa", "PA"}
_UINT16_MAX = 65535
#: What a broken, truncated or unsupported file makes Pillow (or the conversion of its pixels) raise.
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, Image.DecompressionBombError)

Size = tuple[int, int]
Probe = tuple[Size, bool]


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


# ---- reading files ----------------------------------------------------------------------------------


def reason(exc: BaseException) -> str:
    """Pillow's complaint on one line; its "cannot identify image file '<path>'" would repeat the path."""
    if isinstance(exc, UnidentifiedImageError):
        return "not an image format Pillow recognises"
    return " ".join(str(exc).split()) or type(exc).__name__


def probe(path: Path) -> Probe:
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


def read_file(path: Path, size: Size, channels: int) -> np.ndarray | str:
    """The image as uint8 [C, H, W], or the one-line reason it cannot be read."""
    try:
        return _read(path, size, channels)
    except DECODE_ERRORS as exc:
        return reason(exc)


def stacked(results: list[np.ndarray | str], size: Size, channels: int) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Per-file results (pixels or a reason) as (the readable images stacked uint8 [n, C, H, W], in file order:
    one buffer to send back, not one per image; (offset, reason) of the unreadable ones)."""
    images = [r for r in results if not isinstance(r, str)]
    failures = [(offset, r) for offset, r in enumerate(results) if isinstance(r, str)]
    block = np.stack(images) if images else np.empty((0, channels, *size), dtype=np.uint8)
    return block, failures


def read_chunk(files: list[str], size: Size, channels: int) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """`read_file` for each of `files` (paths as strings), `stacked`: one task of a decoding process."""
    return stacked([read_file(Path(path), size, channels) for path in files], size, channels)

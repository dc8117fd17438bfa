"""The image_folder loader on messy real-world folders: every Pillow mode and bit depth written to disk with
Pillow (plus a hand-made 16-bit RGB PNG), TIFF, nested folders, stray non-image files and broken files."""

from __future__ import annotations

import os
import re
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import torch
import pytest
from PIL import Image

from toolkit.data.config import DataConfig
from toolkit.data.image_folder import list_images, load_image_folder, read_images
from toolkit.data.registry import load_data
from toolkit.errors import DataNotFoundError, UserError

RAMP16 = np.linspace(1000, 60000, 64).round().astype(np.uint16).reshape(8, 8)  # a 16-bit gradient
EXPECTED8 = np.rint(RAMP16.astype(np.float64) * 255 / 65535).astype(np.uint8)  # the same, scaled to 8 bits


def _save(im: Image.Image, path: Path, **kwargs: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, **kwargs)
    return path


def _palette(transparent: bool) -> Image.Image:
    """8x8 palette image of index 1 (pure red) with a column of index 0 (blue), transparent if asked."""
    im = Image.new("P", (8, 8), 1)
    im.putpalette([0, 0, 255, 255, 0, 0] + [0, 0, 0] * 254)
    im.paste(0, (0, 0, 1, 8))
    if transparent:
        im.info["transparency"] = 0
    return im


def _png16_rgb(path: Path, values: np.ndarray) -> Path:
    """A 48-bit (16 bits per channel) RGB PNG written by hand: Pillow can read but not write this format."""
    height, width, _ = values.shape
    rows = b"".join(b"\x00" + values[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
                     + chunk(b"IEND", b""))
    return path


def _truncated_jpeg(path: Path) -> Path:
    """A JPEG cut in half: its header opens fine, decoding it fails."""
    noise = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    _save(Image.fromarray(noise), path, quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _corrupt_png(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(300))
    return path


def _load(root: Path, **overrides: object):
    return load_image_folder(DataConfig(dataset="image_folder", root=str(root), **overrides)).train


# ---- every mode, one image each ---------------------------------------------------------------


def _modes_folder(root: Path) -> dict[str, Path]:
    """One grey-ish file per mode (flat folder, one per name so the load order is the sorted names)."""
    rgb = Image.new("RGB", (8, 8), (200, 100, 50))
    files = {
        "1": _save(Image.new("1", (8, 8), 1), root / "a_1bit.png"),
        "L": _save(Image.new("L", (8, 8), 77), root / "b_grey.bmp"),
        "LA": _save(Image.new("LA", (8, 8), (0, 0)), root / "c_grey_alpha.png"),
        "P": _save(_palette(False), root / "d_palette.png"),
        "P+t": _save(_palette(True), root / "e_palette_transparent.png", transparency=0),
        "RGB": _save(rgb, root / "f_rgb.jpg", quality=100),
        "RGBA": _save(Image.new("RGBA", (8, 8), (0, 0, 0, 0)), root / "g_rgba.webp", lossless=True),
        "CMYK": _save(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), root / "h_cmyk.tif"),
        "I;16": _save(Image.fromarray(RAMP16), root / "i_grey16.png"),
        "I;16B": _save(Image.frombytes("I;16B", (8, 8), RAMP16.astype(">u2").tobytes()), root / "j_grey16b.tiff"),
        "I": _save(Image.fromarray(RAMP16.astype(np.int32)), root / "k_int32.tif"),
        "F01": _save(Image.fromarray(np.full((8, 8), 0.5, dtype=np.float32)), root / "l_float01.tif"),
        "Fwide": _save(Image.fromarray(np.linspace(-5, 5, 64, dtype=np.float32).reshape(8, 8)),
                       root / "m_floatwide.tif"),
        "RGB16": _png16_rgb(root / "n_rgb16.png", np.stack([RAMP16] * 3, axis=-1)),
    }
    return files


def test_modes_on_disk_are_the_modes_under_test(tmp_path: Path) -> None:
    """Guards the other tests: Pillow must really write (and read back) each mode we claim to cover."""
    files = _modes_folder(tmp_path)
    read_back = {key: Image.open(path).mode for key, path in files.items()}
    assert read_back == {"1": "1", "L": "L", "LA": "LA", "P": "P", "P+t": "P", "RGB": "RGB", "RGBA": "RGBA",
                         "CMYK": "CMYK", "I;16": "I;16", "I;16B": "I;16B", "I": "I", "F01": "F", "Fwide": "F",
                         "RGB16": "RGB"}


def test_every_mode_loads_with_sensible_pixels(tmp_path: Path) -> None:
    files = _modes_folder(tmp_path)
    data = _load(tmp_path)
    assert data.images.shape == (len(files), 3, 8, 8) and data.skipped == []  # colour present -> 3 channels
    px = {key: data.images[i].numpy() for i, key in enumerate(files)}  # files are named in load order
    assert (px["1"] == 255).all() and (px["L"] == 77).all()
    assert (px["LA"] == 255).all()  # fully transparent black over white is white, not black
    assert px["P"][:, 0, 5].tolist() == [255, 0, 0] and px["P"][:, 0, 0].tolist() == [0, 0, 255]
    assert px["P+t"][:, 0, 5].tolist() == [255, 0, 0] and px["P+t"][:, 0, 0].tolist() == [255, 255, 255]
    assert np.abs(px["RGB"][:, 4, 4].astype(int) - [200, 100, 50]).max() <= 2
    assert (px["RGBA"] == 255).all()
    assert px["CMYK"][:, 0, 0].tolist() == [255, 0, 0]
    assert (px["F01"] == 128).all()  # 0.5 of [0, 1]
    assert px["Fwide"][0, 0, 0] == 0 and px["Fwide"][0, 7, 7] == 255  # stretched from its own min/max


@pytest.mark.parametrize("key", ["I;16", "I;16B", "I"])
def test_16_bit_grey_is_scaled_not_clipped(tmp_path: Path, key: str) -> None:
    files = _modes_folder(tmp_path / "all")
    only = tmp_path / "one" / files[key].name
    only.parent.mkdir()
    only.write_bytes(files[key].read_bytes())
    data = _load(only.parent)
    assert data.images.shape == (1, 1, 8, 8)
    got = data.images[0, 0].numpy()
    assert got.min() < 10 and got.max() < 240  # clipping would make (almost) everything 255
    np.testing.assert_array_equal(got, EXPECTED8)


def test_16_bit_rgb_png_is_scaled(tmp_path: Path) -> None:
    _png16_rgb(tmp_path / "x.png", np.stack([RAMP16, RAMP16 // 2, RAMP16 // 4], axis=-1))
    got = _load(tmp_path).images[0].numpy().astype(int)
    assert np.abs(got[0] - EXPECTED8).max() <= 1  # Pillow keeps the high byte: v >> 8 vs v * 255 / 65535
    assert np.abs(got[1] - EXPECTED8 // 2).max() <= 1


def test_grey_only_folder_stays_one_channel_and_channels_option_converts(tmp_path: Path) -> None:
    _save(Image.fromarray(RAMP16), tmp_path / "a.png")
    _save(Image.new("1", (8, 8), 1), tmp_path / "b.tif")
    assert _load(tmp_path).images.shape == (2, 1, 8, 8)
    rgb = _load(tmp_path, channels=3).images
    assert rgb.shape == (2, 3, 8, 8) and (rgb[0, 0] == rgb[0, 2]).all()
    np.testing.assert_array_equal(rgb[0, 1].numpy(), EXPECTED8)


# ---- messy folders ----------------------------------------------------------------------------


def _messy_folder(root: Path) -> dict[str, Path]:
    """Two classes, nested sub-folders, mixed sizes and formats, stray files and two broken images."""
    _save(Image.new("RGB", (12, 10), (255, 0, 0)), root / "cats" / "a.png")
    _save(Image.new("L", (30, 20), 40), root / "cats" / "2021" / "summer" / "b.TIF")
    _save(Image.fromarray(RAMP16), root / "dogs" / "c.png")
    _save(Image.new("RGB", (5, 7), (0, 0, 255)), root / "dogs" / "deep" / "d.webp", lossless=True)
    (root / "cats" / "notes.txt").write_text("not an image")
    (root / "cats" / ".DS_Store").write_bytes(b"\x00\x01junk")
    _save(Image.new("RGB", (8, 8)), root / "dogs" / "._d.png")  # macOS resource-fork twin: hidden
    _save(Image.new("RGB", (8, 8)), root / "dogs" / ".thumbnails" / "t.png")  # inside a hidden folder
    return {"corrupt": _corrupt_png(root / "cats" / "broken.png"),
            "truncated": _truncated_jpeg(root / "dogs" / "deep" / "cut.jpg")}


def test_messy_folder_loads_the_readable_images_at_one_size(tmp_path: Path) -> None:
    broken = _messy_folder(tmp_path)
    with pytest.warns(UserWarning) as caught:
        data = _load(tmp_path)
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert len(messages) == 2  # one warning per broken file, no more
    assert any(str(broken["corrupt"]) in m for m in messages)
    assert any(str(broken["truncated"]) in m for m in messages)
    assert all("\n" not in m for m in messages)
    assert sorted(data.skipped) == sorted(str(p) for p in broken.values())
    assert data.class_names == ["cats", "dogs"]
    assert data.labels is not None and data.labels.tolist() == [0, 0, 1, 1]
    # sorted by path, so cats/2021/summer/b.TIF (30 x 20, grey) comes first and sets the size for all
    assert data.images.shape == (4, 3, 20, 30)
    assert data.images[0, :, 0, 0].tolist() == [40, 40, 40]
    assert data.images[1, :, 5, 5].tolist() == [255, 0, 0]
    assert 0 < int(data.images[2, 0].min()) < int(data.images[2, 0].max()) < 240  # the 16-bit ramp, scaled
    assert data.images[3, :, 10, 15].tolist() == [0, 0, 255]


def test_skipped_files_survive_load_data_protocols(tmp_path: Path) -> None:
    broken = _messy_folder(tmp_path)
    cfg = DataConfig(dataset="image_folder", root=str(tmp_path), image_size=6)
    with pytest.warns(UserWarning):
        merged = load_data(cfg, "transductive").train
    assert len(merged) == 4 and len(merged.skipped) == len(broken)


def test_strict_raises_user_error_naming_the_file(tmp_path: Path) -> None:
    broken = _corrupt_png(tmp_path / "flat" / "b.png")
    _save(Image.new("L", (8, 8), 9), tmp_path / "flat" / "a.png")
    with pytest.raises(UserError, match=re.escape(str(broken))) as info:
        _load(tmp_path / "flat", strict=True)
    assert "\n" not in str(info.value)

    cut = _truncated_jpeg(tmp_path / "trunc" / "z.jpg")
    _save(Image.new("L", (8, 8), 9), tmp_path / "trunc" / "a.png")
    with pytest.raises(UserError, match=re.escape(str(cut))):
        _load(tmp_path / "trunc", strict=True)


def test_folder_of_only_unreadable_files_is_one_data_not_found_error(tmp_path: Path) -> None:
    _corrupt_png(tmp_path / "a.png")
    (tmp_path / "b.jpg").write_text("this is text, not a JPEG")
    _truncated_jpeg(tmp_path / "c.jpg")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DataNotFoundError, match=re.escape(str(tmp_path))) as info:
            _load(tmp_path)
    assert "\n" not in str(info.value)

    only_truncated = tmp_path / "t"
    _truncated_jpeg(only_truncated / "x.jpg")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DataNotFoundError, match="x.jpg"):
            _load(only_truncated)


# ---- helpers used by `toolkit predict` --------------------------------------------------------


def test_list_images_and_read_images(tmp_path: Path) -> None:
    _messy_folder(tmp_path)
    names = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)]
    assert names == ["cats/2021/summer/b.TIF", "cats/a.png", "cats/broken.png", "dogs/c.png",
                     "dogs/deep/cut.jpg", "dogs/deep/d.webp"]
    readable = [tmp_path / "dogs" / "c.png", tmp_path / "cats" / "a.png"]
    images = read_images(readable, (8, 8), 1)
    assert images.shape == (2, 1, 8, 8)
    np.testing.assert_array_equal(images[0, 0].numpy(), EXPECTED8)
    with pytest.raises(UserError, match=re.escape(str(tmp_path / "dogs" / "deep" / "cut.jpg"))):
        read_images([*readable, tmp_path / "dogs" / "deep" / "cut.jpg"], (8, 8), 1)


def test_processes_decode_the_same_images_in_the_same_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """[data] workers: decoding processes give the images, labels and skipped files of one process, in file
    order (tasks of 3 files here, so every process decodes several), and strict stops at the first bad file."""
    import toolkit.data.image_folder as image_folder

    monkeypatch.setattr(image_folder, "_PROCESS_MIN", 4)
    monkeypatch.setattr(image_folder, "_TASK", 3)
    broken = _messy_folder(tmp_path)
    rng = np.random.default_rng(0)
    for i in range(40):  # enough files for every thread to decode several
        pixels = rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)
        _save(Image.fromarray(pixels), tmp_path / ("cats" if i % 2 else "dogs") / f"r{i:02d}.png")
    loaded = {}
    for workers in (1, 4):
        with pytest.warns(UserWarning) as caught:
            data = load_image_folder(DataConfig(dataset="image_folder", root=str(tmp_path), workers=workers,
                                                cache_decoded=False)).train
        loaded[workers] = (data, [str(w.message) for w in caught if issubclass(w.category, UserWarning)])
    (one, warned_one), (four, warned_four) = loaded[1], loaded[4]
    assert len(one) == 44 and torch.equal(one.images, four.images)
    assert one.labels.tolist() == four.labels.tolist() and one.skipped == four.skipped
    assert warned_one == warned_four and sorted(one.skipped) == sorted(str(p) for p in broken.values())
    stops = []
    for workers in (1, 4):
        with pytest.raises(UserError, match="cannot read image") as stopped:
            load_image_folder(DataConfig(dataset="image_folder", root=str(tmp_path), workers=workers, strict=True,
                                         cache_decoded=False))
        stops.append(str(stopped.value))
    assert stops[0] == stops[1] and any(str(p) in stops[0] for p in broken.values())  # the same first bad file

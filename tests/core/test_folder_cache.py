"""Decoded image folders in the cache: the second load decodes nothing and gives the same images (read through
a memory map), any change to the files or the settings decodes again, unreadable files are still reported,
and `cache_decoded = false` keeps nothing."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import toolkit.data.image_folder as image_folder
from toolkit.data.config import DataConfig
from toolkit.data.registry import load_data


def _folder(root: Path, per_class: int = 6) -> Path:
    rng = np.random.default_rng(0)
    for c in ("cats", "dogs"):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / c / f"{i:02d}.png")
    (root / "dogs" / "broken.png").write_bytes(b"not a png")
    return root


class Decodes:
    """Counts the files image_folder decodes."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = image_folder.read_file

        def counted(path, size, channels):  # type: ignore[no-untyped-def]
            self.count += 1
            return real(path, size, channels)

        monkeypatch.setattr(image_folder, "read_file", counted)  # decoding in this process: workers = 1


def _mapped_from(address: int) -> str | None:
    """The file mapped at `address` in this process (Linux /proc/self/maps), if any."""
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        low, high = (int(v, 16) for v in fields[0].split("-"))
        if low <= address < high:
            return fields[5].strip() if len(fields) > 5 else None
    return None


def _load(root: Path, **settings: object):  # noqa: ANN202
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        splits = load_data(DataConfig(dataset="image_folder", root=str(root), workers=1, **settings), "transductive", 0)
    return splits.train, [str(w.message) for w in caught if "cannot read image" in str(w.message)]


def test_second_load_reads_the_memory_map(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOOLKIT_CACHE_DIR", str(tmp_path / "cache"))
    root = _folder(tmp_path / "photos")
    decodes = Decodes(monkeypatch)
    first, told_first = _load(root)
    assert decodes.count == 12 and len(first) == 12 and len(told_first) == 1  # broken.png fails its header read
    second, told_second = _load(root)
    assert decodes.count == 12  # nothing decoded again
    assert np.array_equal(first.images.numpy(), second.images.numpy())
    assert np.array_equal(first.labels, second.labels) and first.labels.tolist() == [0] * 6 + [1] * 6
    assert told_second == told_first and second.skipped == first.skipped  # still reported, once
    (array_file,) = (tmp_path / "cache" / "folders").glob("*.npy")
    assert _mapped_from(second.images.data_ptr()) == str(array_file)  # the images live in the mapped file

    os.utime(root / "cats" / "00.png", ns=(1, 1))  # a file changed (date): decoded again
    _load(root)
    assert decodes.count == 24
    Image.fromarray(np.zeros((12, 10, 3), np.uint8)).save(root / "cats" / "new.png")  # a file added
    third, _ = _load(root)
    assert decodes.count == 24 + 13 and len(third) == 13
    _load(root, image_size=8)  # another setting
    assert decodes.count == 24 + 13 + 13


def test_cache_decoded_false_keeps_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOOLKIT_CACHE_DIR", str(tmp_path / "cache"))
    root = _folder(tmp_path / "photos")
    decodes = Decodes(monkeypatch)
    _load(root, cache_decoded=False)
    _load(root, cache_decoded=False)
    assert decodes.count == 24 and not (tmp_path / "cache" / "folders").exists()


def test_a_run_does_not_change_the_cached_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The map is copy-on-write: writing into the loaded images (a careless plugin) leaves the file as decoded."""
    monkeypatch.setenv("TOOLKIT_CACHE_DIR", str(tmp_path / "cache"))
    root = _folder(tmp_path / "photos")
    first, _ = _load(root)
    expected = first.images.clone()
    first.images.zero_()
    again, _ = _load(root)
    assert np.array_equal(again.images.numpy(), expected.numpy())

"""`[data] decode = "ray"`: an image folder decoded by Ray Data tasks on a (local) Ray instance gives exactly the
images, order and unreadable files of a local decode, in several blocks; without Ray Data, one clear line."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import toolkit.data.image_folder as image_folder
from toolkit.data.config import DataConfig
from toolkit.data.registry import load_data
from toolkit.errors import UserError

pytestmark = [pytest.mark.usefixtures("ray_local"), pytest.mark.xdist_group("ray")]  # one Ray instance, one worker


def _folder(root: Path) -> Path:
    rng = np.random.default_rng(1)
    for c, n in (("a", 9), ("b", 7)):
        (root / c).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (10 + i, 12, 3), dtype=np.uint8)).save(root / c / f"{i:02d}.png")
    whole = (root / "b" / "03.png").read_bytes()
    (root / "b" / "03x.png").write_bytes(whole[: len(whole) // 2])  # a readable header, cut pixel data: it fails
    # while decoding, mid-block (it sorts between 03 and 04)
    return root


def _load(root: Path, decode: str) -> tuple[object, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cfg = DataConfig(dataset="image_folder", root=str(root), workers=1, decode=decode, cache_decoded=False,
                         image_size=8)
        data = load_data(cfg, "transductive", 0).train
    return data, [str(w.message) for w in caught if "cannot read image" in str(w.message)]


def test_ray_decode_matches_local_decode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _folder(tmp_path / "imgs")
    monkeypatch.setattr(image_folder, "_TASK", 4)  # 16 files, 4 per block: several Ray Data blocks
    local, local_warnings = _load(root, "processes")
    fanned, ray_warnings = _load(root, "ray")
    assert fanned.images.shape == local.images.shape == (16, 3, 8, 8)
    assert torch.equal(fanned.images, local.images) and np.array_equal(fanned.labels, local.labels)
    assert fanned.skipped == local.skipped == [str(root / "b" / "03x.png")] and ray_warnings == local_warnings


def test_ray_decode_without_ray_data_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _folder(tmp_path / "imgs")
    monkeypatch.setitem(sys.modules, "ray.data", None)
    with pytest.raises(UserError, match=r'decode = "ray" needs Ray Data .*pip install "ray\[data\]"'):
        _load(root, "ray")

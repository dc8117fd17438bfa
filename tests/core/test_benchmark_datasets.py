"""Offline benchmark data sets (digits_color, photo_patches, lfw_subset) and `[data] long_tail`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import RECIPES, toolkit_env
from toolkit.data.base import DataSplits, ImageData
from toolkit.data.config import DataConfig
from toolkit.data.digits_color import MIN_LUMA_GAP, colour_pairs
from toolkit.data.long_tail import long_tail_counts
from toolkit.data.registry import DATASETS, labelled_without_loading, load_data, register_dataset
from toolkit.errors import UserError

LUMA = np.array([0.299, 0.587, 0.114])


def _load(name: str, seed: int = 0, **kw: object) -> ImageData:
    return load_data(DataConfig(dataset=name, **kw), "transductive", seed).train


# ------------------------------------------------------------------------------------------ long_tail
@pytest.mark.parametrize("ratio", [10.0, 50.0])
def test_long_tail_counts_follow_the_formula_on_digits(ratio: float) -> None:
    full = np.bincount(_load("digits").labels, minlength=10)
    expected = [max(1, round(int(n) * ratio ** (-c / 9))) for c, n in enumerate(full)]
    tailed = _load("digits", long_tail=ratio)
    assert np.bincount(tailed.labels, minlength=10).tolist() == expected
    assert expected[0] == full[0] and expected[-1] == round(full[-1] / ratio)
    # The subset is chosen with a fixed seed: another run seed (either protocol) sees the same images.
    other = _load("digits", seed=7, long_tail=ratio)
    assert torch.equal(tailed.images, other.images) and np.array_equal(tailed.labels, other.labels)
    split = [load_data(DataConfig(long_tail=ratio), "split", s) for s in (0, 7)]
    pooled = [np.sort(np.concatenate([p.train.labels, p.test.labels])) for p in split]
    assert np.array_equal(pooled[0], pooled[1]) and np.array_equal(pooled[0], np.sort(tailed.labels))


def test_long_tail_keeps_at_least_one_and_r1_keeps_all() -> None:
    assert long_tail_counts(np.array([5, 5, 5]), 1000.0).tolist() == [5, 1, 1]
    assert long_tail_counts(np.array([7, 0, 9]), 1.0).tolist() == [7, 0, 9]


def test_long_tail_applies_to_both_shipped_parts() -> None:
    def two_parts(cfg: DataConfig, seed: int) -> DataSplits:
        def part(n: int) -> ImageData:
            return ImageData(torch.zeros((n, 1, 4, 4), dtype=torch.uint8), np.arange(n) % 4, "two_parts")
        return DataSplits(part(400), part(80))

    register_dataset("two_parts_test_set", two_parts)
    try:
        splits = load_data(DataConfig(dataset="two_parts_test_set", long_tail=8.0), "split")
        assert np.bincount(splits.train.labels).tolist() == [100, 50, 25, 12]
        assert splits.test is not None and np.bincount(splits.test.labels).tolist() == [20, 10, 5, 2]
    finally:
        DATASETS.pop("two_parts_test_set", None)


def test_long_tail_without_labels_is_a_one_line_user_error() -> None:
    def unlabelled(cfg: DataConfig, seed: int) -> DataSplits:
        return DataSplits(ImageData(torch.zeros((20, 1, 4, 4), dtype=torch.uint8), None, "unlabelled"), None)

    register_dataset("unlabelled_test_set", unlabelled)
    try:
        assert len(_load("unlabelled_test_set")) == 20  # fine without long_tail
        with pytest.raises(UserError) as info:
            _load("unlabelled_test_set", long_tail=10.0)
    finally:
        DATASETS.pop("unlabelled_test_set", None)
    message = str(info.value)
    assert isinstance(info.value, ValueError) and "\n" not in message
    assert "[data] long_tail" in message and "unlabelled" in message


def test_long_tail_without_labels_on_the_command_line(tmp_path: Path, mlflow_store: str) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(12):
        Image.fromarray(np.full((8, 8), i * 20, dtype=np.uint8)).save(flat / f"{i}.png")
    sets = ["data.dataset=image_folder", f"data.root={flat}", "data.long_tail=10"]
    args = [sys.executable, "-m", "toolkit.commands.app", "run", str(RECIPES / "baseline_digits.toml"),
            *[a for s in sets for a in ("--set", s)], "-o", str(tmp_path / "out")]
    proc = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, timeout=1800,
                          env=toolkit_env(MLFLOW_TRACKING_URI=mlflow_store))
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    assert len(lines) == 1 and "[data] long_tail" in lines[0], proc.stderr


# ---------------------------------------------------------------------------------- new data sets
@pytest.mark.parametrize("name, shape, counts", [
    ("digits_color", (1797, 3, 32, 32), None),
    ("photo_patches", (3000, 3, 32, 32), [300] * 10),
    ("lfw_subset", (200, 1, 25, 25), [100, 100]),
])
def test_new_data_sets_shape_labels_and_balance(name: str, shape: tuple[int, ...], counts: list[int] | None) -> None:
    data = _load(name)
    assert tuple(data.images.shape) == shape and data.images.dtype == torch.uint8
    assert data.labels is not None and data.num_classes == len(data.class_names or [])
    got = np.bincount(data.labels, minlength=data.num_classes)
    if counts is None:  # digits: sklearn's own near-balanced counts, 174..183 per class
        from sklearn.datasets import load_digits

        assert np.array_equal(data.labels, load_digits().target) and len(got) == 10 and got.min() >= 170
    else:
        assert got.tolist() == counts
    assert labelled_without_loading(name)
    assert torch.equal(data.images, _load(name, seed=5).images), "the data set must not depend on the run seed"


def test_digits_color_foreground_and_background_differ_and_vary() -> None:
    from sklearn.datasets import load_digits

    ink = load_digits().images  # [N, 8, 8]; the top-left pixel is blank in every digit
    assert (ink[:, 0, 0] == 0).all()
    data = _load("digits_color").images.numpy().astype(np.float64) / 255.0  # [N, 3, 32, 32]
    background = data[:, :, 0, 0]
    flat = data.reshape(len(data), 3, -1)
    brightest_ink = flat[np.arange(len(data)), :, np.abs(((flat - background[:, :, None]).transpose(0, 2, 1) @ LUMA)).argmax(1)]
    gap = np.abs((brightest_ink - background) @ LUMA)
    assert gap.min() >= 0.8 * MIN_LUMA_GAP  # ink peaks a bit below 1 after bilinear upsampling
    for colours in (background, brightest_ink):
        assert len(np.unique(np.round(colours, 2), axis=0)) > 0.9 * len(data) and colours.std(0).min() > 0.15
    fg, bg = colour_pairs(500, np.random.default_rng(0))
    assert np.abs((fg - bg) @ LUMA).min() >= MIN_LUMA_GAP


def test_photo_patches_classes_come_from_different_photos() -> None:
    import skimage.data

    from toolkit.data.photo_patches import PHOTOS

    data = _load("photo_patches")
    x = data.images.numpy()
    assert data.class_names == list(PHOTOS) and len(set(PHOTOS)) >= 8
    features = np.stack([np.r_[x[data.labels == c].mean((0, 2, 3)), x[data.labels == c].std((2, 3)).mean()]
                         for c in range(len(PHOTOS))])
    distances = np.linalg.norm(features[:, None] - features[None], axis=-1) + np.eye(len(PHOTOS)) * 1e9
    assert distances.min() > 5.0, "two classes have the same mean colour and texture"
    for c, name in enumerate(PHOTOS):  # the first crop of each class lies, pixel for pixel, in its photo
        photo = np.asarray(getattr(skimage.data, name)())
        photo = photo[:, :, 0] if photo.ndim == 3 else photo
        crop = x[data.labels == c][0, 0]
        rows = np.lib.stride_tricks.sliding_window_view(photo, 32, axis=1)  # [H, W-31, 32]
        ys, xs = np.nonzero((rows == crop[0]).all(-1))
        assert any(np.array_equal(photo[y : y + 32, x0 : x0 + 32], crop) for y, x0 in zip(ys, xs)), name
    colour = [name in ("coffee", "chelsea", "astronaut", "rocket") for name in PHOTOS]
    for c, is_colour in enumerate(colour):
        part = x[data.labels == c]
        assert bool((part[:, 0] != part[:, 1]).any()) == is_colour  # grey photos repeated to 3 channels


def test_lfw_subset_faces_come_first() -> None:
    data = _load("lfw_subset")
    x = data.images.numpy()[:, 0].astype(np.float64)
    assert x.max() > 200 and data.class_names == ["face", "non-face"]
    assert (data.labels[:100] == 0).all() and (data.labels[100:] == 1).all()

    def centre_minus_sides(images: np.ndarray) -> float:
        mean = images.mean(0)
        return float(mean[:, 9:16].mean() - np.r_[mean[:, :4].ravel(), mean[:, -4:].ravel()].mean())

    # A face is bright skin in the middle between darker sides; the non-faces (background) are not.
    assert centre_minus_sides(x[data.labels == 0]) > 40 > centre_minus_sides(x[data.labels == 1])


def test_missing_scikit_image_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "skimage", None)
    monkeypatch.setitem(sys.modules, "skimage.data", None)
    for name in ("photo_patches", "lfw_subset"):
        with pytest.raises(UserError, match="pip install scikit-image") as info:
            _load(name)
        assert "\n" not in str(info.value) and name in str(info.value)

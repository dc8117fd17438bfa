"""Data set loaders on real data (sklearn digits) and on small files written in the genuine on-disk formats."""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from toolkit.data.base import DataSplits, ImageData
from toolkit.data.cifar import CIFAR20_CLASSES, UnsafePickleError
from toolkit.data.config import DataConfig
from toolkit.data.registry import DATASETS, convert_channels, load_data, register_dataset, resize_uint8
from toolkit.errors import DataNotFoundError, UserError

# ---- config -----------------------------------------------------------------------------------


def test_config_rejects_unknown_dataset_and_lists_valid_names() -> None:
    with pytest.raises(ValidationError) as info:
        DataConfig(dataset="imagenet")
    assert "cifar10" in str(info.value) and "digits" in str(info.value)


def test_config_rejects_unknown_key_and_bad_values() -> None:
    with pytest.raises(ValidationError):
        DataConfig(datset="digits")
    with pytest.raises(ValidationError):
        DataConfig(test_fraction=1.0)
    with pytest.raises(ValidationError):
        DataConfig(channels=2)


def test_image_folder_requires_root() -> None:
    with pytest.raises(ValidationError, match="root"):
        DataConfig(dataset="image_folder")


# ---- digits -----------------------------------------------------------------------------------


def test_digits_transductive_is_all_real_digits() -> None:
    splits = load_data(DataConfig(dataset="digits"), "transductive")
    data = splits.train
    assert splits.test is None
    assert data.images.shape == (1797, 1, 8, 8) and data.images.dtype == torch.uint8
    assert data.labels is not None and data.labels.dtype == np.int64
    assert sorted(np.unique(data.labels).tolist()) == list(range(10))
    assert int(data.images.max()) == 255 and int(data.images.min()) == 0
    assert data.class_names == [str(i) for i in range(10)]


def test_digits_split_is_stratified_disjoint_and_seeded() -> None:
    cfg = DataConfig(dataset="digits", test_fraction=0.25)
    a = load_data(cfg, "split", seed=1)
    b = load_data(cfg, "split", seed=1)
    c = load_data(cfg, "split", seed=2)
    assert a.test is not None and b.test is not None and c.test is not None
    assert len(a.train) + len(a.test) == 1797
    assert len(a.test) == round(1797 * 0.25)
    assert torch.equal(a.test.images, b.test.images)
    assert not torch.equal(a.test.images, c.test.images)
    # stratified: every class has about a quarter of its images in the test part
    total = np.bincount(np.concatenate([a.train.labels, a.test.labels]))
    share = np.bincount(a.test.labels, minlength=10) / total
    assert np.all(np.abs(share - 0.25) < 0.03)
    # disjoint and complete: the multiset of images is unchanged
    merged = torch.cat([a.train.images, a.test.images]).flatten(1)
    full = load_data(cfg, "transductive").train.images.flatten(1)
    assert torch.equal(merged.sum(0), full.sum(0))


# ---- synthetic --------------------------------------------------------------------------------


def test_synthetic_deterministic_with_requested_shape_and_classes() -> None:
    cfg = DataConfig(dataset="synthetic", num_samples=120, num_classes=5, synthetic_size=12, synthetic_channels=1)
    a = load_data(cfg, "transductive", seed=3).train
    b = load_data(cfg, "transductive", seed=3).train
    c = load_data(cfg, "transductive", seed=4).train
    assert a.images.shape == (120, 1, 12, 12)
    assert torch.equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    assert not torch.equal(a.images, c.images)
    assert np.bincount(a.labels).tolist() == [24] * 5
    assert a.num_classes == 5


def test_synthetic_classes_are_separable_by_template() -> None:
    """Nearest class mean on the raw pixels beats chance by far: the clusters carry signal."""
    cfg = DataConfig(dataset="synthetic", num_samples=400, num_classes=4)
    splits = load_data(cfg, "split", seed=0)
    assert splits.test is not None
    x_tr = splits.train.images.flatten(1).float()
    means = torch.stack([x_tr[torch.as_tensor(splits.train.labels == k)].mean(0) for k in range(4)])
    pred = torch.cdist(splits.test.images.flatten(1).float(), means).argmin(1).numpy()
    assert (pred == splits.test.labels).mean() > 0.6


# ---- CIFAR ------------------------------------------------------------------------------------


def _cifar_batch(n: int, rng: np.random.Generator, label_key: bytes, num_labels: int) -> dict:
    return {
        b"batch_label": b"fake batch",
        b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
        label_key: rng.integers(0, num_labels, size=n).tolist(),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }


def _dump(obj: object, path: Path, protocol: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=protocol)


def test_cifar10_reads_official_pickle_layout(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    batches = []
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        batch = _cifar_batch(3, rng, b"labels", 10)
        _dump(batch, folder / name, protocol=2 if i % 2 == 0 else pickle.DEFAULT_PROTOCOL)
        batches.append(batch)
    splits = load_data(DataConfig(dataset="cifar10", root=str(tmp_path)), "split")
    assert splits.test is not None
    assert splits.train.images.shape == (15, 3, 32, 32) and splits.test.images.shape == (3, 3, 32, 32)
    assert splits.train.class_names is not None and splits.train.class_names[0] == "airplane"
    # pixel layout: row = 1024 red (row-major 32x32), then green, then blue
    row = batches[1][b"data"][2]
    img = splits.train.images[3 + 2].numpy()
    for c, y, x in [(0, 0, 0), (0, 5, 7), (1, 31, 0), (2, 17, 29)]:
        assert img[c, y, x] == row[c * 1024 + y * 32 + x]
    assert splits.train.labels.tolist() == sum((b[b"labels"] for b in batches[:5]), [])
    assert splits.test.labels.tolist() == batches[5][b"labels"]
    merged = load_data(DataConfig(dataset="cifar10", root=str(tmp_path)), "transductive")
    assert merged.test is None and len(merged.train) == 18


def test_cifar20_uses_coarse_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-100-python"
    parts = {}
    for name, n in (("train", 5), ("test", 4)):
        batch = _cifar_batch(n, rng, b"coarse_labels", 20)
        batch[b"fine_labels"] = rng.integers(0, 100, size=n).tolist()
        _dump(batch, folder / name, protocol=2)
        parts[name] = batch
    splits = load_data(DataConfig(dataset="cifar20", root=str(tmp_path)), "split")
    assert splits.test is not None
    assert splits.train.labels.tolist() == parts["train"][b"coarse_labels"]
    assert splits.test.labels.tolist() == parts["test"][b"coarse_labels"]
    assert splits.train.class_names == CIFAR20_CLASSES and len(CIFAR20_CLASSES) == 20
    row = parts["test"][b"data"][3]
    assert np.array_equal(splits.test.images[3].numpy().reshape(-1), row)


def test_cifar_pickle_from_numpy1_names_legacy_module(tmp_path: Path) -> None:
    """The official files were written by numpy 1.x, whose arrays name `numpy.core.multiarray`."""
    rng = np.random.default_rng(3)
    batch = _cifar_batch(2, rng, b"coarse_labels", 20)
    raw = pickle.dumps(batch, protocol=2)
    assert b"numpy._core.multiarray" in raw
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for name in ("train", "test"):
        (folder / name).write_bytes(raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    splits = load_data(DataConfig(dataset="cifar20", root=str(tmp_path)), "split")
    assert splits.test is not None
    assert np.array_equal(splits.test.images.numpy().reshape(2, -1), batch[b"data"])


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # what an attacker's pickle would carry
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    folder = tmp_path / "cifar-100-python"
    _dump({b"data": _Evil(marker), b"coarse_labels": [0]}, folder / "train", protocol=2)
    _dump({b"data": np.zeros((1, 3072), np.uint8), b"coarse_labels": [0]}, folder / "test", protocol=2)
    with pytest.raises(UnsafePickleError) as info:
        load_data(DataConfig(dataset="cifar20", root=str(tmp_path)), "split")
    assert str(folder / "train") in str(info.value)
    assert "system" in str(info.value)
    assert isinstance(info.value, UserError)
    assert not marker.exists()


def test_missing_cifar_names_path_and_remedy(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError) as info:
        load_data(DataConfig(dataset="cifar10", root=str(tmp_path)), "split")
    message = str(info.value)
    assert str(tmp_path / "cifar-10-batches-py") in message
    assert "download = true" in message and "data.root" in message
    assert "\n" not in message


# ---- STL-10 -----------------------------------------------------------------------------------


def _write_stl(folder: Path, split: str, images: np.ndarray, labels: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    # official layout: per image, per channel, column-major 96x96
    np.ascontiguousarray(images.transpose(0, 1, 3, 2)).tofile(folder / f"{split}_X.bin")
    (labels + 1).astype(np.uint8).tofile(folder / f"{split}_y.bin")


def test_stl10_binary_layout_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    folder = tmp_path / "stl10_binary"
    train = rng.integers(0, 256, size=(3, 3, 96, 96), dtype=np.uint8)
    test = rng.integers(0, 256, size=(2, 3, 96, 96), dtype=np.uint8)
    _write_stl(folder, "train", train, np.array([0, 9, 4]))
    _write_stl(folder, "test", test, np.array([1, 2]))
    (folder / "class_names.txt").write_text("\n".join(f"name{i}" for i in range(10)) + "\n")
    splits = load_data(DataConfig(dataset="stl10", root=str(tmp_path)), "split")
    assert splits.test is not None
    assert np.array_equal(splits.train.images.numpy(), train)
    assert np.array_equal(splits.test.images.numpy(), test)
    assert splits.train.labels.tolist() == [0, 9, 4] and splits.test.labels.tolist() == [1, 2]
    assert splits.train.class_names == [f"name{i}" for i in range(10)]
    assert len(load_data(DataConfig(dataset="stl10", root=str(tmp_path)), "transductive").train) == 5


def test_missing_stl10_names_path(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="train_X.bin") as info:
        load_data(DataConfig(dataset="stl10", root=str(tmp_path)), "transductive")
    assert str(tmp_path / "stl10_binary") in str(info.value)


# ---- image folders ----------------------------------------------------------------------------


def _png(path: Path, size: tuple[int, int], colour: tuple[int, ...] | int, mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour).save(path)


def test_image_folder_with_class_folders(tmp_path: Path) -> None:
    _png(tmp_path / "dog" / "a.png", (10, 8), (200, 10, 10))
    _png(tmp_path / "cat" / "b.png", (10, 8), (10, 200, 10))
    _png(tmp_path / "cat" / "a.jpg", (10, 8), (10, 10, 200))
    _png(tmp_path / "notes" / "readme.txt.png", (10, 8), 0, mode="L")
    (tmp_path / "empty").mkdir()
    data = load_data(DataConfig(dataset="image_folder", root=str(tmp_path)), "transductive").train
    assert data.class_names == ["cat", "dog", "notes"]
    assert data.labels is not None and data.labels.tolist() == [0, 0, 1, 2]
    assert data.images.shape == (4, 3, 8, 10)  # first image's size (W=10, H=8), colour present
    assert data.images[2, :, 0, 0].tolist() == [200, 10, 10]  # dog/a.png


def test_image_folder_flat_and_labels_false(tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    _png(flat / "x.png", (6, 6), 50, mode="L")
    _png(flat / "y.bmp", (6, 6), 90, mode="L")
    data = load_data(DataConfig(dataset="image_folder", root=str(flat)), "transductive").train
    assert data.labels is None and data.images.shape == (2, 1, 6, 6)
    assert data.images[:, 0, 0, 0].tolist() == [50, 90]

    nested = tmp_path / "nested"
    _png(nested / "a" / "1.png", (6, 6), 1, mode="L")
    _png(nested / "b" / "2.png", (6, 6), 2, mode="L")
    data = load_data(DataConfig(dataset="image_folder", root=str(nested), labels=False), "transductive").train
    assert data.labels is None and len(data) == 2


def test_image_folder_mixed_sizes_are_resized(tmp_path: Path) -> None:
    _png(tmp_path / "a" / "1.png", (12, 12), (255, 0, 0))
    _png(tmp_path / "b" / "2.png", (30, 20), (0, 0, 255))
    data = load_data(DataConfig(dataset="image_folder", root=str(tmp_path)), "transductive").train
    assert data.images.shape == (2, 3, 12, 12)
    assert data.images[1, :, 5, 5].tolist() == [0, 0, 255]
    sized = load_data(DataConfig(dataset="image_folder", root=str(tmp_path), image_size=7, channels=1), "transductive")
    assert sized.train.images.shape == (2, 1, 7, 7)


def test_image_folder_train_test_subfolders_and_fallback_split(tmp_path: Path) -> None:
    for part, n in (("train", 4), ("test", 2)):
        for k in range(n):
            _png(tmp_path / part / ("a" if k % 2 else "b") / f"{k}.png", (5, 5), k, mode="L")
    splits = load_data(DataConfig(dataset="image_folder", root=str(tmp_path)), "split")
    assert splits.test is not None and len(splits.train) == 4 and len(splits.test) == 2
    assert splits.train.class_names == ["a", "b"]
    merged = load_data(DataConfig(dataset="image_folder", root=str(tmp_path)), "transductive")
    assert merged.test is None and len(merged.train) == 6

    flat = tmp_path / "flat"
    for k in range(10):
        _png(flat / f"{k}.png", (5, 5), k, mode="L")
    splits = load_data(DataConfig(dataset="image_folder", root=str(flat), test_fraction=0.3), "split", seed=0)
    assert splits.test is not None and (len(splits.train), len(splits.test)) == (7, 3)


def test_image_folder_missing_or_empty(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(DataNotFoundError, match=re.escape(str(missing))):
        load_data(DataConfig(dataset="image_folder", root=str(missing)), "transductive")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images")
    with pytest.raises(DataNotFoundError, match="empty"):
        load_data(DataConfig(dataset="image_folder", root=str(tmp_path / "empty")), "transductive")


# ---- shaping and registry ---------------------------------------------------------------------


def test_resize_and_channel_conversion_on_load() -> None:
    cfg = DataConfig(dataset="digits", image_size=16, channels=3)
    splits = load_data(cfg, "split")
    for part in (splits.train, splits.test):
        assert part is not None
        assert part.images.shape[1:] == (3, 16, 16) and part.images.dtype == torch.uint8
        assert torch.equal(part.images[:, 0], part.images[:, 2])


def test_convert_channels_and_resize_values() -> None:
    rgb = torch.zeros((2, 3, 4, 4), dtype=torch.uint8)
    rgb[:, 0] = 255
    gray = convert_channels(rgb, 1)
    assert gray.shape == (2, 1, 4, 4) and int(gray[0, 0, 0, 0]) == round(0.299 * 255)
    flat = torch.full((1, 1, 9, 9), 77, dtype=torch.uint8)
    assert torch.equal(resize_uint8(flat, 4), torch.full((1, 1, 4, 4), 77, dtype=torch.uint8))
    ramp = torch.arange(8, dtype=torch.uint8).mul(30).view(1, 1, 1, 8).expand(1, 1, 8, 8)
    small = resize_uint8(ramp, 4)
    assert small.dtype == torch.uint8 and bool((small[0, 0, 0, 1:] > small[0, 0, 0, :-1]).all())


def test_register_dataset_extension_point() -> None:
    def tiny(cfg: DataConfig, seed: int) -> DataSplits:
        images = torch.arange(20 * 4 * 4, dtype=torch.int64).remainder(256).to(torch.uint8).view(20, 1, 4, 4)
        return DataSplits(ImageData(images, np.arange(20) % 2, "tiny"), None)

    register_dataset("tiny_test_set", tiny)
    try:
        with pytest.raises(ValueError):
            register_dataset("tiny_test_set", tiny)
        splits = load_data(DataConfig(dataset="tiny_test_set", test_fraction=0.5), "split")
        assert splits.test is not None and len(splits.test) == 10
        assert splits.train.name == "tiny_test_set/train"
    finally:
        DATASETS.pop("tiny_test_set", None)


def test_unknown_protocol_is_rejected() -> None:
    with pytest.raises(ValueError):
        load_data(DataConfig(), "inductive")  # type: ignore[arg-type]

"""CIFAR-10 and CIFAR-20 (CIFAR-100's 20 coarse superclasses) from the official python-pickle files.

The files are read with a restricted unpickler that only rebuilds numpy arrays, so a tampered file
on disk cannot run code. Missing files are downloaded only when the recipe says `download = true`.
"""

from __future__ import annotations

import importlib
import pickle
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from toolkit.data.base import DataSplits, ImageData
from toolkit.data.config import DataConfig
from toolkit.errors import DataNotFoundError, UserError

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR20_CLASSES = [
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
    "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
    "large_man-made_outdoor_things", "large_natural_outdoor_scenes", "large_omnivores_and_herbivores",
    "medium_mammals", "non-insect_invertebrates", "people", "reptiles", "small_mammals", "trees",
    "vehicles_1", "vehicles_2",
]  # fmt: skip

_CIFAR10 = {
    "folder": "cifar-10-batches-py",
    "url": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    "md5": "c58f30108f718f92721af3b95e74349a",
}
_CIFAR100 = {
    "folder": "cifar-100-python",
    "url": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    "md5": "eb9058c3a382ffc7106e4002c42a8d85",
}


class UnsafePickleError(UserError, pickle.UnpicklingError):
    """A data file asked to build something other than plain arrays; we refuse rather than run it."""


def _numpy_attr(module: str, name: str) -> Callable[..., Any]:
    """numpy moved `core` to `_core` in 2.0; files written by either name the old or new module."""
    for candidate in (f"numpy._core.{module}", f"numpy.core.{module}"):
        try:
            return getattr(importlib.import_module(candidate), name)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"numpy has no {module}.{name}")


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """Stand-in for `_codecs.encode`, which protocol-2 pickles use for bytes; only latin-1 is allowed."""
    if encoding.lower().replace("-", "").replace("_", "") not in ("latin1", "iso88591"):
        raise pickle.UnpicklingError(f"refusing codec {encoding!r} in a data set pickle")
    return text.encode("latin1")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for module, name in (("multiarray", "_reconstruct"), ("multiarray", "scalar"), ("numeric", "_frombuffer")):
        func = _numpy_attr(module, name)
        allowed[(f"numpy.core.{module}", name)] = func
        allowed[(f"numpy._core.{module}", name)] = func
    return allowed


class ArrayUnpickler(pickle.Unpickler):
    """Unpickler whose `find_class` only hands out what numpy arrays and scalars need."""

    def __init__(self, file: Any, path: Path) -> None:
        super().__init__(file, encoding="bytes")
        self._path = path
        self._allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self._path}: refusing to load {module}.{name} from this pickle "
                "(data set files may only contain arrays); the file is corrupt or tampered with"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self._path}: refusing a persistent reference in a data set pickle")


def safe_unpickle(path: Path) -> dict[str, Any]:
    """Read one CIFAR pickle into a dict with str keys (the files use py2 byte-string keys)."""
    try:
        with open(path, "rb") as fh:
            obj = ArrayUnpickler(fh, path).load()
    except UnsafePickleError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise UserError(f"{path}: not a readable CIFAR pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise UserError(f"{path}: expected a dict in a CIFAR pickle, found {type(obj).__name__}")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def ensure_files(name: str, root: Path, files: list[Path], info: dict[str, str], download: bool) -> None:
    """Download and extract the official archive into `root` when allowed; else one-line DataNotFoundError."""
    missing = [f for f in files if not f.is_file()]
    if not missing:
        return
    archive = info["url"].rsplit("/", 1)[-1]
    how = (
        f"set `[data] download = true` (needs internet), or extract {archive} ({info['url']}) "
        f"into {root}, or pass --set data.root=DIR"
    )
    if not download:
        raise DataNotFoundError(f"{name}: data set not found: looked for {missing[0]}; {how}")
    try:
        from torchvision.datasets.utils import download_and_extract_archive

        download_and_extract_archive(info["url"], str(root), md5=info["md5"])
    except Exception as exc:  # network, checksum and archive errors all mean "not available"
        detail = " ".join(str(exc).split())
        raise DataNotFoundError(f"{name}: download of {info['url']} failed ({detail}); {how}") from None
    still = [f for f in files if not f.is_file()]
    if still:
        raise DataNotFoundError(f"{name}: after download, {still[0]} is still missing; {how}")


def _to_images(data: Any, path: Path) -> torch.Tensor:
    """Rows of 3072 bytes (1024 R, then G, then B, each row-major 32x32) -> uint8 [n, 3, 32, 32]."""
    arr = np.asarray(data)
    if arr.dtype != np.uint8 or arr.ndim != 2 or arr.shape[1] != 3 * 32 * 32:
        raise UserError(f"{path}: 'data' must be uint8 [n, 3072], got {arr.dtype} {arr.shape}")
    return torch.from_numpy(np.ascontiguousarray(arr.reshape(-1, 3, 32, 32)))


def _read_part(path: Path, label_key: str, name: str, class_names: list[str]) -> ImageData:
    batch = safe_unpickle(path)
    if "data" not in batch or label_key not in batch:
        raise UserError(f"{path}: missing 'data' or '{label_key}' entry")
    images = _to_images(batch["data"], path)
    labels = np.asarray(batch[label_key], dtype=np.int64)
    if labels.min(initial=0) < 0 or labels.max(initial=0) >= len(class_names):
        raise UserError(f"{path}: labels outside 0..{len(class_names) - 1}")
    return ImageData(images, labels, name, class_names)


def _root(cfg: DataConfig) -> Path:
    return Path(cfg.root or "./data").expanduser().resolve()


def load_cifar10(cfg: DataConfig, seed: int = 0) -> DataSplits:
    """CIFAR-10: 50,000 train images (data_batch_1..5) and 10,000 test images (test_batch)."""
    root = _root(cfg)
    folder = root / _CIFAR10["folder"]
    train_files = [folder / f"data_batch_{i}" for i in range(1, 6)]
    test_file = folder / "test_batch"
    ensure_files("cifar10", root, [*train_files, test_file], _CIFAR10, cfg.download)
    train = ImageData.concat([_read_part(f, "labels", "cifar10", CIFAR10_CLASSES) for f in train_files], "cifar10")
    test = _read_part(test_file, "labels", "cifar10", CIFAR10_CLASSES)
    return DataSplits(train, test)


def load_cifar20(cfg: DataConfig, seed: int = 0) -> DataSplits:
    """CIFAR-100 images labelled by the 20 coarse superclasses ('coarse_labels'), as in SCAN/CDC."""
    root = _root(cfg)
    folder = root / _CIFAR100["folder"]
    train_file, test_file = folder / "train", folder / "test"
    ensure_files("cifar20", root, [train_file, test_file], _CIFAR100, cfg.download)
    train = _read_part(train_file, "coarse_labels", "cifar20", CIFAR20_CLASSES)
    test = _read_part(test_file, "coarse_labels", "cifar20", CIFAR20_CLASSES)
    return DataSplits(train, test)

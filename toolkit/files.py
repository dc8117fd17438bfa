"""torch files: atomic writes (temp file + rename) and safe reads (weights_only=True).

A kill during a write leaves the previous checkpoint intact; a corrupt file is a one-line error.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from toolkit.errors import UserError


def cache_dir() -> Path:
    """Where caches live (pretrained backbones, encoded features, decoded image folders): TOOLKIT_CACHE_DIR when
    set, else ~/.cache/deepclust-toolkit."""
    env = os.environ.get("TOOLKIT_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "deepclust-toolkit"


class CheckpointError(UserError):
    """A checkpoint file is missing, truncated or not a checkpoint."""


def save_atomic(obj: Any, path: str | Path) -> Path:
    """Write with torch.save into a temp file in the same folder, fsync, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_safe(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """torch.load with weights_only=True; any failure becomes a CheckpointError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint (corrupt, truncated or unsafe): {first[:200]}") from None


@contextlib.contextmanager
def file_lock(path: str | Path, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """An exclusive lock on `path` (created) across processes, released on exit or when the holder dies;
    `on_wait` is called once when another process holds it (before blocking), so a run can say why it waits."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)

"""Decoded image folders kept on disk as memory-mapped arrays, so a folder is decoded once.

The first load decodes straight into a `.npy` file (numpy's format, written through a memory map, so decoding
never holds the whole array in memory); later loads of the same files with the same settings open it with
`mmap_mode="c"` (copy-on-write: pages are read from disk as batches touch them, and nothing a run does can
change the file) instead of decoding. A folder larger than memory then trains with the resident memory of what
its batches touch, which the OS can evict again.

The key is a hash of the root, every file's relative path, size and modification time, and the loading
settings (image size, channels, strict, labels): editing, adding or removing a file, or changing a setting,
is a new key; nothing reads a file's bytes to decide. `[data] cache_decoded = false` turns it off; delete
`<cache>/folders/` to reclaim the disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.files import cache_dir, file_lock

#: Bumped when the decoding (to_uint8, resizing) changes, so old arrays are not reused.
FORMAT = 1


def folder_key(root: Path, parts: list[list[Path]], settings: dict[str, Any]) -> str:
    """sha256 over the files' relative paths, sizes and mtimes (per part, in load order) and `settings`."""
    h = hashlib.sha256(json.dumps({"root": str(root), "settings": settings, "format": FORMAT},
                                  sort_keys=True, default=str).encode())
    prefix = len(str(root)) + 1  # string slicing: pathlib's relative_to cost more than the stat calls
    for number, files in enumerate(parts):
        h.update(f"part {number} {len(files)}\n".encode())
        for path in files:
            text = str(path)
            stat = os.stat(text)
            h.update(f"{text[prefix:]}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


def folder_root() -> Path:
    return cache_dir() / "folders"


@dataclass
class CachedPart:
    """One decoded part (the whole folder, or train/ or test/): its images as a copy-on-write memory map, which
    of the part's files they are, and the unreadable files' warnings as first reported."""

    images: np.ndarray
    kept: list[int]
    skipped: list[str]
    messages: list[str]

    def warn_again(self) -> None:
        """The unreadable files are still unreadable: say so on every load, as the first one did."""
        for message in self.messages:
            warnings.warn(f"{message}; skipped", UserWarning, stacklevel=3)


def read(key: str) -> tuple[dict[str, Any], list[CachedPart]] | None:
    """(meta, parts) of a complete cached folder, or None (its meta file is written last)."""
    meta_path = folder_root() / f"{key}.json"
    if not meta_path.is_file():
        return None
    meta = json.loads(meta_path.read_text())
    parts = []
    for number, part in enumerate(meta["parts"]):
        array = np.load(folder_root() / f"{key}-{number}.npy", mmap_mode="c")
        parts.append(CachedPart(array[: len(part["kept"])], part["kept"], part["skipped"], part["messages"]))
    return meta, parts


def lock(key: str) -> Any:
    """Held while a folder is decoded into the cache: a concurrent run waits and then reads it."""
    return file_lock(folder_root() / f"{key}.lock")


def new_array(key: str, number: int, shape: tuple[int, ...]) -> tuple[np.ndarray, Path, Path]:
    """A writable memory-mapped .npy of `shape` at a temporary name; (array, temporary path, final path)."""
    final = folder_root() / f"{key}-{number}.npy"
    temporary = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    final.parent.mkdir(parents=True, exist_ok=True)
    array = np.lib.format.open_memmap(temporary, mode="w+", dtype=np.uint8, shape=shape)
    return array, temporary, final


def commit(key: str, meta: dict[str, Any], arrays: list[tuple[np.ndarray, Path, Path]]) -> None:
    """Flush and rename the arrays, then write the meta file that marks the entry complete."""
    for array, temporary, final in arrays:
        array.flush()
        os.replace(temporary, final)
    meta_path = folder_root() / f"{key}.json"
    temporary_meta = meta_path.with_name(f".{meta_path.name}.{os.getpid()}.tmp")
    temporary_meta.write_text(json.dumps(meta))
    os.replace(temporary_meta, meta_path)

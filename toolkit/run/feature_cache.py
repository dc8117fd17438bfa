"""Encoded features on disk, shared by every run and search trial on this machine (the backbone cache's
sibling): a head-only search over a frozen backbone encodes its view copies once, in whichever process asks
first, and the others read them.

Files are `<cache>/features/<key>.pt` (torch.save of one tensor, read back with weights_only=True); the key
(toolkit/api/feature_key.py) hashes the weights, view settings, images and draws, so a stale file is never
read: a change makes a new key. A per-key file lock makes concurrent trials wait for the first one's file
instead of encoding in parallel. `TOOLKIT_FEATURE_CACHE=0` turns it off; delete the folder to reclaim disk.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import torch

from toolkit.files import cache_dir, file_lock, load_safe, save_atomic


def enabled() -> bool:
    return os.environ.get("TOOLKIT_FEATURE_CACHE", "1") != "0"


class FeatureCache:
    """A `toolkit.api.context.FeatureStore` on disk; counts what it served (hits) and made (misses)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or cache_dir() / "features"
        self.hits = self.misses = 0

    def path(self, key: str) -> Path:
        return self.root / f"{key}.pt"

    def fetch(self, key: str, make: Callable[[], torch.Tensor]) -> torch.Tensor:
        target = self.path(key)
        with file_lock(target.with_suffix(".lock")):  # a concurrent trial making this key finishes first
            if target.is_file():
                self.hits += 1
                return load_safe(target)["features"]
            value = make()
            save_atomic({"features": value}, target)
            self.misses += 1
            return value

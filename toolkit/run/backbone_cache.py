"""Cache of pretrained backbones, keyed by a hash of what determines them.

Changing only later stages (head-init, selection, epochs...) reuses the backbone instead of
pretraining again. The key covers the data section, the data's content hash, the model and
pretrain sections, the views, the seed and the toolkit version. The number of clusters is left out unless the
pretrain plugin makes the clustering head: `toolkit cluster -k auto` and a later run with the K it estimated
share one backbone.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from toolkit import __version__
from toolkit.files import cache_dir, file_lock, load_safe, save_atomic


def backbone_key(resolved_recipe: dict[str, Any], data_fingerprint: str, includes_head: bool = False) -> str:
    """`includes_head`: the pretrain plugin also makes the clustering head, so its shape is part of the key;
    otherwise the head's shape is a later stage's business and changing it reuses the backbone."""
    parts = {k: resolved_recipe.get(k) for k in ("data", "model", "pretrain", "views")}
    if not includes_head and isinstance(parts["model"], dict):
        parts["model"] = {k: v for k, v in parts["model"].items() if k != "head_hidden_dim"}
    if not includes_head and isinstance(parts["data"], dict):
        parts["data"] = {k: v for k, v in parts["data"].items() if k not in ("num_clusters", "k_range")}
    parts["seed"] = resolved_recipe["experiment"]["seed"]
    parts["data_fingerprint"] = data_fingerprint
    parts["toolkit"] = __version__
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def cache_path(key: str) -> Path:
    return cache_dir() / "backbones" / f"{key}.pt"


def key_lock(key: str, on_wait: Any = None) -> Any:
    """Held while a run looks up, makes and stores backbone `key`: concurrent runs or search trials of the same
    backbone wait for the first one's pretraining and read its result instead of pretraining too."""
    return file_lock(cache_dir() / "backbones" / f"{key}.lock", on_wait)


def load_cached(key: str) -> dict[str, Any] | None:
    path = cache_path(key)
    return load_safe(path) if path.is_file() else None


def store(key: str, payload: dict[str, Any]) -> Path:
    return save_atomic(payload, cache_path(key))

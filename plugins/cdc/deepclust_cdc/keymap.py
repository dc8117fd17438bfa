"""Backbone state dicts from public releases, mapped onto the toolkit's backbone keys.

Layouts handled (prefixes are stripped, projector/queue/momentum/head keys dropped):
- MoCo (facebookresearch/moco, also SPICE's MoCo stage): state_dict, `module.encoder_q.*`, `module.encoder_k.*`, `queue`
- solo-learn (CDC's pretraining): state_dict, `backbone.*`, `projector.*`, `momentum_backbone.*`, `queue`
- SCAN: `backbone.*` + `contrastive_head.*` / `cluster_head.*` (checkpoint['model']); blocks name the
  projection shortcut `shortcut.0/1` where torchvision says `downsample.0/1`
- SPICE: `feature_module.*` / `module.feature_module.*`, heads dropped
- CDC: `backbone.*`, `cluster_head.*`, `calibration_head.*` (checkpoint['model'] or a bare dict)
- the toolkit's own final.pt / cache files: {'backbone': state_dict, ...}
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import torch

#: Where the state dict sits inside a checkpoint file, tried in order.
CONTAINERS = ("state_dict", "model", "backbone", "net", "network")
#: Prefixes a backbone's keys carry in the known layouts, longest first.
PREFIXES = ("module.encoder_q.", "encoder_q.", "module.feature_module.", "feature_module.", "module.backbone.",
            "model.backbone.", "backbone.", "module.", "model.", "")
#: Keys of the backbone architecture that releases keep but the toolkit's backbone does not have.
DROPPED = re.compile(r"^(fc|classifier|head|heads)\.")
RENAMES = ((re.compile(r"\.shortcut\.(\d)\."), r".downsample.\1."),)


def unwrap(obj: Any) -> dict[str, torch.Tensor]:
    """The flat name -> tensor mapping inside a loaded checkpoint (descending into known containers)."""
    for _ in range(3):
        if _is_state_dict(obj):
            return dict(obj)
        if not isinstance(obj, Mapping):
            break
        inner = next((obj[k] for k in CONTAINERS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if _is_state_dict(obj):
        return dict(obj)
    raise ValueError("no state dict found (expected a name -> tensor mapping, possibly under "
                     f"{', '.join(repr(k) for k in CONTAINERS)})")


def map_keys(state: Mapping[str, torch.Tensor], expected: set[str], prefix: str | None = None) -> tuple[dict[str, torch.Tensor], str]:
    """Strip the layout's prefix (given, or the one matching most expected keys) and rename blocks.

    Returns the mapped dict (only keys under the prefix, minus classifier/fc keys) and the prefix used.
    """
    candidates = (prefix,) if prefix is not None else PREFIXES
    best: tuple[int, dict[str, torch.Tensor], str] | None = None
    for pre in candidates:
        mapped = {}
        for key, value in state.items():
            if not key.startswith(pre):
                continue
            name = key[len(pre):]
            for pattern, repl in RENAMES:
                name = pattern.sub(repl, name)
            if DROPPED.match(name) and name not in expected:
                continue
            mapped[name] = value
        score = len(expected & set(mapped))
        if best is None or score > best[0]:
            best = (score, mapped, pre)
    assert best is not None
    return best[1], best[2]


def check(mapped: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> list[str]:
    """Problems that prevent loading: missing keys, unexpected keys, shape mismatches (short lists)."""
    missing = sorted(k for k in set(target) - set(mapped) if not k.endswith("num_batches_tracked"))  # old releases lack it
    unexpected = sorted(set(mapped) - set(target))
    shapes = sorted(k for k in set(mapped) & set(target) if tuple(mapped[k].shape) != tuple(target[k].shape))
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {_short(missing)}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {_short(unexpected)}")
    if shapes:
        problems.append("shape mismatch: " + _short([f"{k} {tuple(mapped[k].shape)} vs {tuple(target[k].shape)}" for k in shapes]))
    return problems


def _short(items: list[str], n: int = 8) -> str:
    return ", ".join(items[:n]) + (f", ... (+{len(items) - n})" if len(items) > n else "")


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(k, str) for k in obj) and \
        sum(isinstance(v, torch.Tensor) for v in obj.values()) >= max(1, len(obj) // 2)

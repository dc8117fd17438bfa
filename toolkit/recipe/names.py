"""Overrides in short, for run names: two runs of one recipe that differ by `--set` get different names.
Shared by a run's MLflow name (track/records.py) and its seeds' parent (run/seeds.py)."""

from __future__ import annotations

import hashlib

#: Longest override summary in a run name; longer ones are cut and end in a hash of all of them.
_NAME_SUMMARY = 60


def override_summary(overrides: list[str]) -> str:
    """'train.lr=0.001', 'selection.threshold=0.9' -> 'lr=0.001,threshold=0.9' (the seed is named apart). A key
    whose last part two overrides share keeps its section: 'pretrain.epochs=2,train.epochs=5'."""
    pairs = []
    for text in overrides:
        key, _, value = text.partition("=")
        if key.strip() == "experiment.seed":
            continue
        value = value.strip().strip("'\"")
        if "/" in value:  # a path: its last part says enough
            value = value.rstrip("/").rsplit("/", 1)[-1]
        pairs.append((key.strip(), value))
    last = [key.rsplit(".", 1)[-1] for key, _ in pairs]
    parts = [f"{'.'.join(key.rsplit('.', 2)[-2:]) if last.count(short) > 1 else short}={value}"
             for (key, value), short in zip(pairs, last)]
    text = ",".join(parts)
    if len(text) > _NAME_SUMMARY:
        digest = hashlib.sha1(",".join(f"{k}={v}" for k, v in pairs).encode()).hexdigest()[:6]  # seed aside
        text = f"{text[:_NAME_SUMMARY - 9]}..~{digest}"
    return text

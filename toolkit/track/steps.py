"""Per-metric high-water marks of what one MLflow run already holds, so a resumed run logs each step once."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable


class LoggedSteps:
    """The highest step logged per metric of one MLflow run, kept in a JSON file in the run's folder.

    A resumed run repeats the epochs after its last checkpoint or stage resume point (for example epoch 0,
    the head right after head-init, which has no checkpoint of its own) and emits them again; with these
    marks each (metric, step) reaches MLflow once. Marks are per metric, not per stage, because a stage may
    report different metrics for the same epoch (SPICE's selection logs into self_label epochs).
    """

    def __init__(self, path: Path, fresh: bool) -> None:
        self.path = path
        self.marks: dict[str, int] = {}
        if fresh:
            path.unlink(missing_ok=True)
        elif path.is_file():
            self.marks = {k: int(v) for k, v in json.loads(path.read_text()).items()}

    def new(self, step: int, metrics: dict[str, float]) -> dict[str, float]:
        """The metrics not yet logged at `step`."""
        return {k: v for k, v in metrics.items() if step > self.marks.get(k, -1)}

    def advance(self, step: int, keys: Iterable[str]) -> None:
        self.marks.update({k: step for k in keys})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.marks))
        os.replace(tmp, self.path)

"""Engine-side accuracy of pseudo-labels that plugins publish (`RunContext.publish_labels`).

The ground truth stays in this observer, which the engine installs; plugins only emit the event and
get nothing back. Accuracies are reported as ordinary stage metrics (MLflow, progress) and the latest
ones are added to summary.json.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from toolkit.run.events import EventBus, Observer
from toolkit.metrics import cluster_acc


class PseudoLabelProbe(Observer):
    """Turns `on_pseudo_labels` events into `<name>_acc` (and `<name>_count`) metrics of that stage and epoch.

    Cluster ids are matched to classes one-to-one (Hungarian) on the published pairs themselves, so
    labels from any head or any set of cluster ids can be scored; duplicates (one sample published
    with two labels) each count.
    """

    def __init__(self, truth: np.ndarray, events: EventBus) -> None:
        self._truth = np.asarray(truth)
        self._events = events
        self.latest: dict[str, float] = {}

    def on_pseudo_labels(self, *, stage: str, epoch: int, name: str, index: Any, labels: Any) -> None:
        idx, lab = np.asarray(index, dtype=np.int64), np.asarray(labels, dtype=np.int64)
        if idx.size == 0:
            return
        metrics = {f"{name}_acc": cluster_acc(lab, self._truth[idx]), f"{name}_count": float(idx.size)}
        prefix = "" if stage == "self_label" else f"{stage}_"
        self.latest.update({prefix + k: v for k, v in metrics.items()})
        self._events.emit("on_epoch_end", stage=stage, epoch=epoch, metrics=metrics, state=None)

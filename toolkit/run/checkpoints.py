"""What a self-labeling checkpoint holds (`TrainState`) and the observer that writes it after every epoch."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from toolkit.api.slots import Plugin
from toolkit.files import save_atomic
from toolkit.run.events import Observer
from toolkit.run.failure import save_traceback
from toolkit.run.folder import RunFolder
from toolkit.run.self_label import Models


@dataclass
class TrainState:
    """Everything needed to continue after a completed epoch (what checkpoints hold)."""

    epoch: int
    models: Models
    optimizer: torch.optim.Optimizer
    plugins: dict[str, Plugin]
    history: list[dict[str, float]]
    run_id: str | None = None
    #: Latest accuracies of published pseudo-labels (engine-side, from ground truth; evaluation only).
    label_metrics: dict[str, float] = field(default_factory=dict)
    #: The cluster count (estimated ones included, so a resumed run keeps the K it started with).
    num_clusters: int = 0

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "backbone": self.models.backbone.state_dict(),
            "head": self.models.head.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "plugin_modules": plugin_modules(self.plugins),
            "plugin_state": {s: p.state_dict() for s, p in self.plugins.items()},
            "history": self.history,
            "mlflow_run_id": self.run_id,
            "label_metrics": dict(self.label_metrics),
            "num_clusters": self.num_clusters,
            **({"ema": self.models.ema.state_dict()} if self.models.ema is not None else {}),
        }


def plugin_modules(plugins: dict[str, Plugin]) -> dict[str, dict[str, Any]]:
    """Every plugin's trainable modules' state dicts, by slot and module name."""
    return {s: {n: m.state_dict() for n, m in p.modules().items()} for s, p in plugins.items()}


class CheckpointWriter(Observer):
    """Observer: after each self-labeling epoch, atomically rewrite the run folder's last checkpoint; when
    the run fails, write its traceback.txt. The engine registers it first (main rank only), so the file
    is there before later observers (the MLflow tracker) close the run and upload it."""

    def __init__(self, path: str | Path, traceback: str | Path | None = None) -> None:
        self.path = Path(path)
        # the checkpoint lies in RUN/checkpoints/, the traceback at the top of RUN
        self.traceback = Path(traceback) if traceback is not None else RunFolder(self.path.parent.parent).traceback

    def on_run_start(self, *, run: Any) -> None:
        """A traceback left by an earlier attempt in this folder is not this run's (it is in that MLflow run)."""
        self.traceback.unlink(missing_ok=True)

    def on_exception(self, *, error: BaseException) -> None:
        """A failure keeps its full traceback; an interruption (Ctrl-C, SIGTERM) is not a failure."""
        if not isinstance(error, KeyboardInterrupt):
            save_traceback(error, self.traceback)

    def on_epoch_end(self, *, stage: str, epoch: int, metrics: dict[str, float], state: Any) -> None:
        if stage == "self_label" and state is not None:
            save_atomic(state.state_dict(), self.path)

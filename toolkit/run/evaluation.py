"""One pass over a set of images with every head: features, clustering logits, final probabilities.

Runs on whatever device the models are on (CPU in CI, GPU otherwise); metrics are computed on CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from toolkit.data.views import BatchView
from toolkit.api.precision import autocast
from toolkit.api.step_cap import chunked
from toolkit.api.slots import CalibrationPlugin
from toolkit.metrics import evaluate
from toolkit.run import contract
from toolkit.run.contract import Call
from toolkit.run.guard import plugin_call


@dataclass
class Predictions:
    """Outputs of all heads over one image set (tensors on the model's device)."""

    features: torch.Tensor
    logits: torch.Tensor
    probs: torch.Tensor
    final: torch.Tensor


@torch.no_grad()
def predict(images: torch.Tensor, view: BatchView, backbone: nn.Module, head: nn.Module,
            calibration: CalibrationPlugin, device: torch.device, batch_size: int = 1024,
            features: torch.Tensor | None = None) -> Predictions:
    """Eval-mode forward of raw views through backbone, head and calibration, in batches; with `features`
    (a frozen backbone's, [train] cached_views) only the head and calibration run."""
    modes = [(m, m.training) for m in (backbone, head)]
    for m, _ in modes:
        m.eval()
    given = features

    def rows(start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        with autocast(device):
            if given is not None:
                f = given[start:stop].to(device)
            else:
                f = backbone(view(images[start:stop].to(device, non_blocking=True)))
            z = head(f)
        return f.float(), z.float()

    try:
        features, logit = chunked(len(images), batch_size, rows)  # a rehearsal ([train] max_steps) cuts it short
    finally:
        for m, mode in modes:
            m.train(mode)
    with plugin_call("evaluation", calibration, method="predict"):
        final = calibration.predict(features, logit)
    final = contract.probabilities(Call(calibration, "predict", "evaluation"), final, len(logit), logit.shape[1], True)
    return Predictions(features, logit, logit.softmax(dim=1), final.float())


def score(preds: Predictions, labels: np.ndarray | None, separate: bool) -> dict[str, float]:
    """Metrics of the final prediction. When a calibration plugin predicts on its own (CDC's second head),
    the unprefixed metrics are that head's and the clustering head's are also logged as clu_* (no cal_* copy
    of the unprefixed ones: identical series only crowd MLflow's charts)."""
    out = evaluate(preds.final.cpu().numpy(), labels)
    if separate:
        clu = evaluate(preds.probs.cpu().numpy(), labels)
        out.update({f"clu_{k}": v for k, v in clu.items()})
    return out

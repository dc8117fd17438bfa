"""Files a finished run leaves in its output folder (and the tracker uploads to MLflow)."""

from __future__ import annotations

from types import ModuleType

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from toolkit.files import save_atomic
from toolkit.metrics import map_predictions
from toolkit.run.checkpoints import plugin_modules
from toolkit.run.folder import RunFolder

if TYPE_CHECKING:
    from toolkit.run.checkpoints import TrainState
    from toolkit.run.evaluation import Predictions
    from toolkit.recipe.loading import Recipe


def write_artifacts(output_dir: Path, recipe: "Recipe", state: "TrainState", preds: "Predictions",
                    labels: np.ndarray | None, summary: dict[str, Any], meta: dict[str, Any]) -> list[Path]:
    """recipe.toml (resolved), summary.json, final checkpoint, and plots when labels exist.

    `meta` (input shape, normalisation, cluster count) goes into the final checkpoint, so that
    `toolkit predict` can rebuild the model for new images without the training data.
    """
    folder = RunFolder(output_dir)
    written = [folder.recipe]
    written[0].write_text(recipe.to_toml(), encoding="utf-8")
    models = state.models  # with [train] ema_decay the averaged weights: those the metrics were measured with
    written.append(save_atomic({"backbone": models.eval_backbone.state_dict(), "head": models.eval_head.state_dict(),
                                "plugin_modules": plugin_modules(state.plugins),
                                "plugin_state": {s: p.state_dict() for s, p in state.plugins.items()},
                                "num_clusters": int(preds.final.shape[1]), "epoch": state.epoch, "meta": meta},
                               folder.final_checkpoint))
    probs = preds.final.cpu().numpy()
    pred = probs.argmax(1)
    np.save(folder.predictions, pred)
    np.save(folder.confidences, probs.max(1).astype(np.float32))
    written += [folder.predictions, folder.confidences]
    two_heads = summary.get("clu_acc") is not None
    name = recipe.experiment.name
    figures = figure_writers()
    if labels is not None and figures is not None:
        reliability_diagram_png, confusion_matrix_png = figures.reliability_diagram_png, figures.confusion_matrix_png
        correct = map_predictions(pred, labels, n_pred=probs.shape[1]) == labels
        written.append(reliability_diagram_png(probs.max(1), correct, folder.file("reliability.png"),
                                               title=f"{name}: final prediction"
                                                     + (" (calibration head)" if two_heads else "")))
        written.append(confusion_matrix_png(pred, labels, folder.file("confusion.png"), title=recipe.experiment.name))
        if two_heads:
            clu = preds.probs.cpu().numpy()
            clu_correct = map_predictions(clu.argmax(1), labels, n_pred=clu.shape[1]) == labels
            written.append(reliability_diagram_png(clu.max(1), clu_correct, folder.file("reliability_clu.png"),
                                                   title=f"{name}: clustering head"))
    path = folder.summary
    path.write_text(json.dumps(summary, indent=2, default=_jsonable), encoding="utf-8")
    written.append(path)
    return written


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return str(value)


def figure_writers() -> ModuleType | None:
    """The figure writers, or None where matplotlib is not installed: a lean install (benchmarks/gpu's
    wheelhouse leaves it out to fit one transfer) writes every result but the PNGs."""
    import importlib

    try:
        return importlib.import_module("toolkit.run.figures")
    except ImportError:
        return None

"""Files a finished run leaves in its output folder (and the tracker uploads to MLflow)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from toolkit.checkpoint import save_atomic
from toolkit.metrics import map_predictions
from toolkit.plots import confusion_matrix_png, reliability_diagram_png

if TYPE_CHECKING:
    from toolkit.engine import TrainState
    from toolkit.evaluation import Predictions
    from toolkit.recipe import Recipe


def write_artifacts(output_dir: Path, recipe: "Recipe", state: "TrainState", preds: "Predictions",
                    labels: np.ndarray | None, summary: dict[str, Any], meta: dict[str, Any]) -> list[Path]:
    """recipe.toml (resolved), summary.json, final checkpoint, and plots when labels exist.

    `meta` (input shape, normalisation, cluster count) goes into the final checkpoint, so that
    `toolkit predict` can rebuild the model for new images without the training data.
    """
    written = [output_dir / "recipe.toml"]
    written[0].write_text(recipe.to_toml(), encoding="utf-8")
    written.append(save_atomic({"backbone": state.models.backbone.state_dict(), "head": state.models.head.state_dict(),
                                "plugin_modules": {s: {n: m.state_dict() for n, m in p.modules().items()}
                                                   for s, p in state.plugins.items()},
                                "plugin_state": {s: p.state_dict() for s, p in state.plugins.items()},
                                "num_clusters": int(preds.final.shape[1]), "epoch": state.epoch, "meta": meta},
                               output_dir / "checkpoints" / "final.pt"))
    probs = preds.final.cpu().numpy()
    pred = probs.argmax(1)
    np.save(output_dir / "predictions.npy", pred)
    written.append(output_dir / "predictions.npy")
    if labels is not None:
        correct = map_predictions(pred, labels, n_pred=probs.shape[1]) == labels
        written.append(reliability_diagram_png(probs.max(1), correct, output_dir / "reliability.png",
                                               title=recipe.experiment.name))
        written.append(confusion_matrix_png(pred, labels, output_dir / "confusion.png", title=recipe.experiment.name))
        if summary.get("clu_acc") is not None:
            clu = preds.probs.cpu().numpy()
            clu_correct = map_predictions(clu.argmax(1), labels, n_pred=clu.shape[1]) == labels
            written.append(reliability_diagram_png(clu.max(1), clu_correct, output_dir / "reliability_clu.png",
                                                   title=f"{recipe.experiment.name} (clustering head)"))
    path = output_dir / "summary.json"
    path.write_text(json.dumps(summary, indent=2, default=_jsonable), encoding="utf-8")
    written.append(path)
    return written


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return str(value)

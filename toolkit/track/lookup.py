"""Find a finished run's folder from what a user types: the folder itself, or an MLflow run id."""

from __future__ import annotations

import tempfile
from pathlib import Path

from toolkit.errors import UserError
from toolkit.run.folder import RunFolder


def run_folder(run: str) -> Path:
    """A run's output folder: `run` itself, or the folder (or downloaded artifacts) of an MLflow run id."""
    path = Path(run)
    if path.is_dir():
        return path
    from mlflow.tracking import MlflowClient

    from toolkit.track.store import tracking_uri

    client = MlflowClient(tracking_uri=tracking_uri()[0])
    try:
        info = client.get_run(run)
    except Exception:  # noqa: BLE001 - mlflow raises its own types for unknown ids
        raise UserError(f"'{run}' is neither a run folder nor an MLflow run id in {tracking_uri()[0]}") from None
    folder = Path(info.data.tags.get("output_dir", ""))
    if folder.is_dir() and RunFolder(folder).final_checkpoint.is_file():
        return folder
    target = Path(tempfile.mkdtemp(prefix="toolkit-predict-"))
    try:
        client.download_artifacts(run, "recipe.toml", str(target))
        client.download_artifacts(run, "checkpoints", str(target))
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"MLflow run {run} has no recipe.toml / checkpoints/final.pt artifacts: {exc}") from None
    return target

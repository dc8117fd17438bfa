"""`toolkit predict`: assign new images to the clusters of a finished run.

The run is found by its output folder or its MLflow run id; the model is rebuilt from the run's
resolved recipe and final checkpoint (read with weights_only=True), and the confidence is the
calibration plugin's when the run has one.
"""

from __future__ import annotations

import csv
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from toolkit.checkpoint import load_safe
from toolkit.context import PluginEvents, RunContext, UnlabeledImages, Views
from toolkit.data.image_folder import list_images, read_images
from toolkit.data.registry import load_data
from toolkit.data.views import BatchView
from toolkit.device import resolve_device
from toolkit.errors import UserError
from toolkit.evaluation import predict
from toolkit.events import EventBus
from toolkit.nn.backbones import build_backbone
from toolkit.nn.heads import ClusterHead
from toolkit.recipe import Recipe, load_recipe


@dataclass
class PredictResult:
    names: list[str]
    clusters: torch.Tensor
    confidence: torch.Tensor
    images: torch.Tensor


def resolve_run(run: str) -> Path:
    """A run's output folder: `run` itself, or the folder (or downloaded artifacts) of an MLflow run id."""
    path = Path(run)
    if path.is_dir():
        if not (path / "recipe.toml").is_file() or not (path / "checkpoints" / "final.pt").is_file():
            raise UserError(f"{path}: not a finished run (recipe.toml or checkpoints/final.pt missing)")
        return path
    from mlflow.tracking import MlflowClient

    from toolkit.tracking import tracking_uri

    client = MlflowClient(tracking_uri=tracking_uri()[0])
    try:
        info = client.get_run(run)
    except Exception:  # noqa: BLE001 - mlflow raises its own types for unknown ids
        raise UserError(f"'{run}' is neither a run folder nor an MLflow run id in {tracking_uri()[0]}") from None
    folder = Path(info.data.tags.get("output_dir", ""))
    if folder.is_dir() and (folder / "checkpoints" / "final.pt").is_file():
        return folder
    target = Path(tempfile.mkdtemp(prefix="toolkit-predict-"))
    try:
        client.download_artifacts(run, "recipe.toml", str(target))
        client.download_artifacts(run, "checkpoints", str(target))
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"MLflow run {run} has no recipe.toml / checkpoints/final.pt artifacts: {exc}") from None
    return target


def _load_images(recipe: Recipe, meta: dict, images_dir: Path | None) -> tuple[list[str], torch.Tensor]:
    size = tuple(meta["image_size"])
    if images_dir is not None:
        folder = Path(images_dir)
        if not folder.is_dir():
            raise UserError(f"{folder}: images folder not found")
        files = list_images(folder)
        if not files:
            raise UserError(f"{folder}: no images found")
        return [str(f.relative_to(folder)) for f in files], read_images(files, size, meta["channels"])
    splits = load_data(recipe.model.data, recipe.experiment.protocol, recipe.experiment.seed)
    data = splits.test if splits.test is not None else splits.train
    return [str(i) for i in range(len(data))], data.images


def predict_run(run: str, images_dir: Path | None = None, device: str = "auto") -> PredictResult:
    folder = resolve_run(run)
    recipe = load_recipe(folder / "recipe.toml")
    ckpt = load_safe(folder / "checkpoints" / "final.pt")
    meta = ckpt.get("meta")
    if not meta:
        raise UserError(f"{folder}: checkpoint predates `toolkit predict` (no meta); re-run the recipe")
    dev = resolve_device(device)
    names, images = _load_images(recipe, meta, images_dir)
    backbone = build_backbone(recipe.model.model.backbone_config(), meta["channels"], tuple(meta["image_size"])).to(dev)
    backbone.load_state_dict(ckpt["backbone"])
    head = ClusterHead(meta["feature_dim"], meta["num_clusters"], recipe.model.model.head_hidden_dim).to(dev)
    head.load_state_dict(ckpt["head"])
    raw = BatchView(None, meta["mean"], meta["std"])
    calibration = recipe.build_plugin("calibration")
    ctx = RunContext(UnlabeledImages(images, "predict"), meta["num_clusters"], dev, recipe.experiment.seed,
                     Views(raw, raw, raw), PluginEvents(EventBus()), lambda: backbone,
                     lambda d: ClusterHead(d, meta["num_clusters"], recipe.model.model.head_hidden_dim).to(dev))
    calibration.setup(ctx, head, meta["feature_dim"])
    for name, state in ckpt.get("plugin_modules", {}).get("calibration", {}).items():
        calibration.modules()[name].load_state_dict(state)
    preds = predict(images, raw, backbone, head, calibration, dev)
    conf, clusters = preds.final.max(dim=1)
    return PredictResult(names, clusters.cpu(), conf.cpu(), images)


def write_csv(result: PredictResult, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "cluster", "confidence"])
        for name, c, p in zip(result.names, result.clusters.tolist(), result.confidence.tolist()):
            writer.writerow([name, c, f"{p:.6f}"])
    return path


def write_grids(result: PredictResult, folder: Path, per_cluster: int = 36) -> list[Path]:
    """One PNG per cluster with its most confident images."""
    from torchvision.utils import save_image

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for cluster in sorted(set(result.clusters.tolist())):
        members = (result.clusters == cluster).nonzero(as_tuple=True)[0]
        best = members[result.confidence[members].argsort(descending=True)[:per_cluster]]
        path = folder / f"cluster_{cluster:03d}.png"
        save_image(result.images[best].float() / 255.0, path, nrow=6, padding=1)
        written.append(path)
    return written

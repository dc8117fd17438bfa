"""`toolkit predict`: assign new images to the clusters of a finished run.

The run is found by its output folder or its MLflow run id; the model is rebuilt from the run's
resolved recipe and final checkpoint (read with weights_only=True), and the confidence is the
calibration plugin's when the run has one.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import torch

from toolkit.files import load_safe
from toolkit.api.context import PluginEvents, RunContext, UnlabeledImages, Views
from toolkit.data.image_folder import list_images, read_images
from toolkit.data.registry import load_data
from toolkit.data.views import BatchView
from toolkit.run.device import resolve_device
from toolkit.errors import UserError
from toolkit.run.evaluation import predict
from toolkit.run.events import EventBus
from toolkit.run.folder import RunFolder
from toolkit.nn.backbones import build_backbone
from toolkit.nn.heads import ClusterHead
from toolkit.recipe.loading import Recipe, load_recipe


@dataclass
class PredictResult:
    names: list[str]
    clusters: torch.Tensor
    confidence: torch.Tensor
    images: torch.Tensor


def _load_images(recipe: Recipe, meta: dict, images_dir: Path | None,
                 skip: list[str] | None = None) -> tuple[list[str], torch.Tensor]:
    size = tuple(meta["image_size"])
    if images_dir is not None:
        folder = Path(images_dir)
        if not folder.is_dir():
            raise UserError(f"{folder}: images folder not found")
        left_out = {Path(s).resolve() for s in skip or []}
        files = [f for f in list_images(folder) if f.resolve() not in left_out]
        if not files:
            raise UserError(f"{folder}: no images found")
        return [str(f.relative_to(folder)) for f in files], read_images(files, size, meta["channels"])
    splits = load_data(recipe.config.data, recipe.experiment.protocol, recipe.experiment.seed)
    data = splits.test if splits.test is not None else splits.train
    return [str(i) for i in range(len(data))], data.images


def predict_run(folder: Path, images_dir: Path | None = None, device: str = "auto",
                skip: list[str] | None = None) -> PredictResult:
    """Rebuild the finished run in `folder` (see toolkit.track.lookup for MLflow run ids) and assign images
    (those of `images_dir` but the files in `skip`, e.g. the unreadable ones its training run skipped)."""
    run = RunFolder(folder)
    if not run.recipe.is_file() or not run.final_checkpoint.is_file():
        raise UserError(f"{folder}: not a finished run (recipe.toml or checkpoints/final.pt missing)")
    recipe = load_recipe(run.recipe)
    ckpt = load_safe(run.final_checkpoint)
    meta = ckpt.get("meta")
    if not meta:
        raise UserError(f"{folder}: checkpoint predates `toolkit predict` (no meta); re-run the recipe")
    dev = resolve_device(device)
    names, images = _load_images(recipe, meta, images_dir, skip)
    backbone = build_backbone(recipe.config.model.backbone_config(), meta["channels"], tuple(meta["image_size"])).to(dev)
    backbone.load_state_dict(ckpt["backbone"])
    head = ClusterHead(meta["feature_dim"], meta["num_clusters"], recipe.config.model.head_hidden_dim).to(dev)
    head.load_state_dict(ckpt["head"])
    raw = BatchView(None, meta["mean"], meta["std"])
    calibration = recipe.build_plugin("calibration")
    ctx = RunContext(UnlabeledImages(images, "predict"), meta["num_clusters"], dev, recipe.experiment.seed,
                     Views(raw, raw, raw), PluginEvents(EventBus()), lambda: backbone,
                     lambda d: ClusterHead(d, meta["num_clusters"], recipe.config.model.head_hidden_dim).to(dev))
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

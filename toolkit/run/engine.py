"""Runs one recipe end to end: data -> pretrain -> encode -> head-init -> self-labeling -> evaluation.

The engine owns the order of stages and the training loop; what happens inside each stage belongs to
the plugin chosen for its slot. Ground-truth labels stay here, used for evaluation only.
"""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from toolkit.run import backbone_cache as cache
from toolkit.api.step_cap import StepCap, activated
from toolkit.run import feature_cache
from toolkit.run.rehearsal import CapObserver
from toolkit.run.ray_encode import remote_encoder
from toolkit.run.frozen_features import FROZEN_SALT, FrozenFeatures
from toolkit.run.speed import Speed
from toolkit.files import load_safe
from toolkit.run.checkpoints import CheckpointWriter, TrainState
from toolkit.run.folder import RunFolder
from toolkit.api.context import EpochState, PluginEvents, RunContext, Schedule, UnlabeledImages, Views
from toolkit.data.base import DataSplits, ImageData, data_facts
from toolkit.data.registry import load_data
from toolkit.data.views import BatchView, channel_stats
from toolkit.run.device import resolve_device
from toolkit.run.parallel import DataParallel, is_main
from toolkit.errors import CheckpointMismatch, RecipeError, TrainingError, UserError
from toolkit.run.evaluation import Predictions, predict, score
from toolkit.run.events import EventBus, Observer
from toolkit.run import contract
from toolkit.run.contract import Call
from toolkit.run.guard import plugin_call
from toolkit.api.slots import SLOTS, CalibrationPlugin, GenerationPlugin, HeadInitPlugin, Plugin, PretrainPlugin, PretrainResult, SelectionPlugin
from toolkit.run.lr_schedule import lr_factor, remember_base_rates
from toolkit.nn.batch_norm import recalibrate
from toolkit.run.self_label import Models, Probe, train_epoch
from toolkit.nn.backbones import build_backbone
from toolkit.nn.heads import ClusterHead
from toolkit.metric_names import HEADLINE_METRICS
from toolkit.metrics import cluster_acc
from toolkit.ops.matching import hungarian_map
from toolkit.registry.entry_points import find
from toolkit.run.label_probe import PseudoLabelProbe
from toolkit.recipe.auto import facts_of
from toolkit.recipe.loading import Recipe



@dataclass
class RunInfo:
    """What observers learn at the start of a run; the tracker fills in `mlflow_run_id`."""

    recipe: Recipe
    output_dir: Path
    device: torch.device
    plugins: dict[str, dict[str, str]]
    num_clusters: int
    n_train: int
    n_eval: int
    has_labels: bool
    resume_run_id: str | None = None
    mlflow_run_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    #: The loaded data as the run saw it (toolkit.track.params.data_facts), logged as `data.*` params.
    data: dict[str, Any] = field(default_factory=dict)
    #: Name and source of the data, for its MLflow dataset input.
    data_source: dict[str, str] = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


class Engine:
    """One run of one recipe. Construct, then call `run()`; returns the summary dict."""

    def __init__(self, recipe: Recipe, output_dir: str | Path, *, device: str | None = None,
                 observers: list[Observer] | None = None, resume: bool = False) -> None:
        self.recipe = recipe
        self.cfg = recipe.config
        self.output_dir = Path(output_dir)
        self.folder = RunFolder(self.output_dir)
        self.device_name = device or self.cfg.experiment.device
        # Data-parallel ranks other than 0 write nothing: no checkpoints, artifacts, run state or cache.
        self.main = is_main()
        self.parallel: DataParallel | None = None  # set in run() when a process group is running
        # The checkpoint writer listens first, so observers that fail (or interrupt) come after it.
        writers: list[Observer] = [CheckpointWriter(self.folder.last_checkpoint)] if self.main else []
        self.events = EventBus([*writers, *(observers or [])])
        self.resume = resume
        self.label_probe: PseudoLabelProbe | None = None  # accuracy of labels plugins publish
        self.speed: Speed | None = None  # [train] compile / channels_last, resolved in run()
        self.skipped_warnings: list[str] = []  # the data loader's warnings (unreadable files), told at run start
        self.skipped_files: list[str] = []
        # encoded view copies shared with later runs and search trials (rank 0 keeps the cache, as for backbones)
        self.feature_cache = feature_cache.FeatureCache() if feature_cache.enabled() and self.main else None
        # [train] max_steps: a rehearsal; its briefly trained backbones and cut-short passes must reach no cache
        self.cap = StepCap(self.cfg.train.max_steps) if self.cfg.train.max_steps else None
        if self.cap is not None:
            self.feature_cache = None
            self.events.add(CapObserver(self.cap))

    # ----------------------------------------------------------------------------------- set-up
    def _load_data(self) -> DataSplits:
        """The data; a loader's warnings (an unreadable file skipped) become the run's one-line warnings."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            splits = load_data(self.cfg.data, self.cfg.experiment.protocol, self.cfg.experiment.seed)
        for w in caught:
            if issubclass(w.category, UserWarning):
                self.skipped_warnings.append(str(w.message))
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        return splits

    def _num_clusters(self, train: ImageData) -> int:
        """The cluster count, checked against the data; 0 for "auto" (estimated after pretraining)."""
        if self.cfg.data.num_clusters == "auto":
            low = self.cfg.data.k_range[0]
            if low > len(train) - 2:
                raise RecipeError(f"the smallest K searched ({low}) needs at least {low + 2} images; the data set "
                                  f"'{train.name}' holds {len(train)}", file=self.recipe.source, section="data",
                                  key="k_range")
            if _all_identical(train.images):
                raise UserError(f"data set '{train.name}': all {len(train)} images are identical, so there is "
                                "nothing to cluster; check [data] root (or the folder given to `toolkit cluster`)")
            return 0
        k = self.cfg.data.num_clusters or train.num_classes
        if not k:
            raise RecipeError("required when the data set has no labels (how many clusters to find)",
                              file=self.recipe.source, section="data", key="num_clusters")
        if k > len(train):
            raise RecipeError(f"{k} clusters asked for, but the data set '{train.name}' holds only {len(train)} "
                              "images; ask for fewer clusters", file=self.recipe.source, section="data",
                              key="num_clusters")
        if _all_identical(train.images):
            raise UserError(f"data set '{train.name}': all {len(train)} images are identical, so there is nothing "
                            "to cluster; check [data] root (or the folder given to `toolkit cluster`)")
        return int(k)

    def _derive(self, train: ImageData, k: int) -> None:
        """Replace the recipe's "auto" sizes by values derived from the loaded data (toolkit.recipe.auto)."""
        if self.recipe.auto:
            self.recipe = self.recipe.resolve(facts_of(len(train), k, train.image_size, train.channels))
            self.cfg = self.recipe.config

    def _views(self, train: ImageData) -> Views:
        mean, std = channel_stats(train.images)
        return Views(raw=BatchView(None, mean, std), weak=BatchView(self.cfg.views.weak, mean, std),
                     strong=BatchView(self.cfg.views.strong, mean, std))

    def _plugin_info(self) -> dict[str, dict[str, str]]:
        out = {}
        for slot in SLOTS:
            name = getattr(self.cfg, slot).method
            info = find(slot, name)
            out[slot] = {"name": name, "distribution": info.distribution, "version": info.version}
        return out

    def _previous_state(self) -> tuple[dict[str, Any] | None, str | None]:
        state_file = self.folder.state
        if not self.resume:
            return None, None
        if not state_file.is_file():
            raise UserError(f"--resume: {self.output_dir} holds no earlier run ({state_file.name} missing); "
                            "pass the --output-dir of the interrupted run")
        run_state = json.loads(state_file.read_text())
        ckpt_path = self.folder.last_checkpoint
        ckpt = load_safe(ckpt_path) if ckpt_path.is_file() else None
        return ckpt, run_state.get("mlflow_run_id")

    # ------------------------------------------------------------------------------------- run
    def run(self) -> dict[str, Any]:
        start = time.perf_counter()
        exp = self.cfg.experiment
        device = resolve_device(self.device_name)
        self.parallel = DataParallel.start(device)
        seed_everything(exp.seed)
        splits = self._load_data()
        train, test = splits.train, splits.test
        evalset = test if test is not None else train
        k = self._num_clusters(train)
        self._derive(train, k)
        views = self._views(train)
        model_cfg = self.cfg.model
        backbone_cfg = model_cfg.backbone_config()
        tcfg = self.cfg.train
        self.speed = speed = Speed(device, tcfg.channels_last, tcfg.compile)
        nbytes = train.images.nbytes + (test.images.nbytes if test is not None else 0)
        data_device = speed.data_device(tcfg.data_on_device, nbytes)

        def new_backbone() -> nn.Module:
            return speed.prepare(build_backbone(backbone_cfg, train.channels, train.image_size).to(device), self._warn)

        def new_head(feature_dim: int) -> nn.Module:  # reads ctx: K may be estimated after pretraining
            return ClusterHead(feature_dim, ctx.num_clusters, model_cfg.head_hidden_dim).to(device)

        ctx = RunContext(UnlabeledImages(train.images.to(data_device), train.name), k, device, exp.seed, views, PluginEvents(self.events),
                         new_backbone, new_head, self.cfg.train.batch_size,
                         schedule=Schedule(tcfg.epochs, max(len(train) // tcfg.batch_size, 1)),
                         checkpoint_dir=self.folder.stage_points if self.main else None,
                         artifact_dir=self.folder.artifacts if self.main else None,
                         feature_store=self.feature_cache, data_fingerprint=train.fingerprint(),
                         remote_encoder=remote_encoder(tcfg.encode))
        plugins: dict[str, Plugin] = {slot: self.recipe.build_plugin(slot) for slot in SLOTS}
        if k == 0 and getattr(plugins["pretrain"], "makes_head", False):
            raise RecipeError(f"\"auto\" needs a pretrain stage that does not train the clustering head; "
                              f"'{self.cfg.pretrain.method}' does, so K must be known before it starts: give a number",
                              file=self.recipe.source, section="data", key="num_clusters")
        ckpt, resume_run_id = self._previous_state()
        if not self.resume and self.main:  # resume points of an earlier run in this folder must not leak into a new one
            shutil.rmtree(self.folder.stage_points, ignore_errors=True)
        if self.main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        info = RunInfo(self.recipe, self.output_dir, device, self._plugin_info(), k, len(train), len(evalset),
                       evalset.labels is not None, resume_run_id,
                       data=data_facts(len(train), len(evalset), k, train.image_size, train.channels, train.fingerprint()),
                       data_source={"name": train.name, "source": self.cfg.data.root or self.cfg.data.dataset})
        info.tags["data_device"] = str(data_device)
        if self.recipe.derived:
            info.tags["auto_keys"] = ",".join(sorted(self.recipe.derived))
        if self.cap is not None:
            info.tags["rehearsal"] = f"max_steps={self.cap.max_steps}: timings only, the metrics mean nothing"
        self.events.start_run(info)
        self._write_run_state(info, "running")
        for message in self.skipped_warnings:  # now that observers (console, MLflow) listen
            self._warn(message)
        self.skipped_files = list(train.skipped) + ([] if test is None else list(test.skipped))
        try:
            with activated(self.cap):
                summary = self._stages(ctx, info, plugins, train, evalset, ckpt, start)
        except BaseException as exc:
            self._write_run_state(info, "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed")
            self.events.emit_exception(exc)
            raise
        finally:
            if self.cap is not None and self.main:
                self.cap.write(self.output_dir / "rehearsal.json")
        self._write_run_state(info, "finished")
        return summary

    def _warn(self, message: str) -> None:
        self.events.emit("on_warning", message=message)

    def _write_run_state(self, info: RunInfo, status: str) -> None:
        if not self.main:
            return
        state = {"mlflow_run_id": info.mlflow_run_id, "status": status, "recipe": self.recipe.source}
        self.folder.state.write_text(json.dumps(state, indent=2))

    def _stages(self, ctx: RunContext, info: RunInfo, plugins: dict[str, Plugin], train: ImageData,
                evalset: ImageData, ckpt: dict[str, Any] | None, start: float) -> dict[str, Any]:
        tcfg = self.cfg.train
        if train.labels is not None and self.label_probe is None:
            self.label_probe = PseudoLabelProbe(train.labels, self.events)
            self.events.add(self.label_probe)
        backbone, pretrained_head = self._pretrain(ctx, plugins["pretrain"], train, info)
        if ctx.num_clusters == 0:  # [data] num_clusters = "auto"
            ctx.num_clusters = info.num_clusters = self._estimated_k(ctx, backbone, ckpt, info)
        if self.speed is not None:  # a pretrain plugin may return a module it built itself
            backbone = self.speed.prepare(backbone, self._warn)
        head_init: HeadInitPlugin = plugins["head_init"]  # type: ignore[assignment]
        if ckpt is not None:
            head = ctx.build_head(_feature_dim(backbone, ctx))
        else:
            seed_everything(ctx.seed + 2)  # same draws whether the backbone came from the cache or not
            self.events.emit("on_stage_start", stage="head_init", total=None)
            features = self._head_init_features(ctx, backbone)
            if self.cfg.experiment.restarts > 1 and not getattr(plugins["pretrain"], "makes_head", False):
                head = self._restarted_head(ctx, head_init, backbone, features, pretrained_head, train)
            else:
                head = self._init_head(ctx, head_init, backbone, features, pretrained_head)
            self.events.emit("on_stage_end", stage="head_init")
        feature_dim = _feature_dim(backbone, ctx)
        calibration: CalibrationPlugin = plugins["calibration"]  # type: ignore[assignment]
        generation: GenerationPlugin = plugins["generation"]  # type: ignore[assignment]
        selection: SelectionPlugin = plugins["selection"]  # type: ignore[assignment]
        with plugin_call("setup", calibration, method="setup"):
            calibration.setup(ctx, head, feature_dim)
        with plugin_call("setup", generation, method="setup"):
            generation.setup(ctx, head, feature_dim)
        if self.parallel is not None and tcfg.view_forward == "separate":
            raise RecipeError('"separate" is not supported in data-parallel runs yet (two forwards through one '
                              'DDP module per step); use "joint"', file=self.recipe.source, section="train",
                              key="view_forward")
        models = Models(backbone, head, tcfg.freeze_backbone)
        if tcfg.ema_decay > 0:
            models.start_ema(tcfg.ema_decay)
        optimizer = self._optimizer(models, plugins)
        state = TrainState(0, models, optimizer, plugins, [], info.mlflow_run_id,
                           self.label_probe.latest if self.label_probe is not None else {}, ctx.num_clusters)
        if ckpt is not None:
            self._restore(state, ckpt)
        self._share(models, plugins)
        train_labels = torch.as_tensor(train.labels, device=ctx.device) if train.labels is not None else None
        probe = Probe(train_labels)
        same_set = evalset is train
        images = ctx.data.images  # on the device when [train] data_on_device put them there
        eval_images = images if same_set else evalset.images.to(images.device)
        frozen = (FrozenFeatures.encode(ctx, models.backbone, tcfg.cached_views, None if same_set else eval_images)
                  if tcfg.cached_views else None)

        def snapshot(epoch: int) -> tuple[EpochState, Predictions, dict[str, float]]:
            backbone, head = models.eval_backbone, models.eval_head  # the EMA with [train] ema_decay
            if tcfg.bn_recalibrate and frozen is None:
                recalibrate(backbone, head, images, ctx.views.raw, ctx.device, backbone_frozen=tcfg.freeze_backbone)
            preds = predict(images, ctx.views.raw, backbone, head, calibration, ctx.device,
                            features=frozen.train_raw if frozen is not None else None)
            eval_preds = preds if same_set else predict(eval_images, ctx.views.raw, backbone, head, calibration,
                                                        ctx.device, features=frozen.eval_raw if frozen else None)
            metrics = score(eval_preds, evalset.labels, calibration.separate_prediction)
            if train.labels is not None:
                mapping = hungarian_map(preds.final.argmax(1).cpu().numpy(), train.labels, n_pred=ctx.num_clusters)
                probe.cluster_to_class = torch.as_tensor(mapping, device=ctx.device)
            classify = _classifier(backbone, head, ctx.device)
            # the state selection and generation see at the start of the next epoch
            state = EpochState(epoch + 1, tcfg.epochs, preds.features, preds.probs, preds.final, classify)
            return state, eval_preds, metrics

        epoch_state, eval_preds, metrics = snapshot(state.epoch)
        if state.epoch == 0:
            self.events.emit("on_epoch_end", stage="self_label", epoch=0, metrics=metrics, state=None)
            if tcfg.reinit:  # epoch 1's state (what selection reads) stays the head-init model's
                models.reinitialise(ctx)
        elif state.history:  # resumed: the last completed epoch's training figures belong in the summary too
            metrics = {**{k: v for k, v in state.history[-1].items() if k != "epoch"}, **metrics}
        self.events.emit("on_stage_start", stage="self_label", total=tcfg.epochs)
        last = tcfg.epochs if self.cap is None else self.cap.epochs(state.epoch + 1, tcfg.epochs)
        for epoch in range(state.epoch + 1, last + 1):
            seed_everything(ctx.seed * 1_000_003 + epoch)  # per-epoch seeding: resumed runs match exactly
            with plugin_call("self_label", selection, epoch, "on_epoch_start"):
                selection.on_epoch_start(ctx, epoch_state)
            with plugin_call("self_label", generation, epoch, "on_epoch_start"):
                generation.on_epoch_start(ctx, epoch_state)
            try:
                train_metrics = train_epoch(ctx, epoch, models, optimizer, selection, calibration, generation, probe,
                                            tcfg.grad_clip, self._lr_factor(ctx), tcfg.view_forward == "separate",
                                            frozen, tcfg.sub_batch_size)
            except (TrainingError, UserError):
                raise
            except Exception as exc:
                raise TrainingError(f"stage self_label, epoch {epoch}: {type(exc).__name__}: {exc}") from exc
            epoch_state, eval_preds, metrics = snapshot(epoch)
            metrics = {**train_metrics, **metrics}
            state.epoch = epoch
            state.history.append({"epoch": epoch, **metrics})
            state.run_id = info.mlflow_run_id
            self.events.emit("on_epoch_end", stage="self_label", epoch=epoch, metrics=metrics, state=state)
        self.events.emit("on_stage_end", stage="self_label")
        meta = {"mean": ctx.views.raw.mean.tolist(), "std": ctx.views.raw.std.tolist(), "channels": train.channels,
                "image_size": list(train.image_size), "num_clusters": ctx.num_clusters, "feature_dim": feature_dim}
        return self._finish(info, state, eval_preds, metrics, evalset, calibration, start, meta)

    # --------------------------------------------------------------------------------- stages
    def _pretrain(self, ctx: RunContext, plugin: Plugin, train: ImageData, info: RunInfo) -> tuple[nn.Module, nn.Module | None]:
        assert isinstance(plugin, PretrainPlugin)
        backbone = ctx.build_backbone()
        key = cache.backbone_key(self.recipe.resolved(), train.fingerprint(), includes_head=plugin.makes_head)
        if not (plugin.cacheable and self.main) or self.cap is not None:
            return self._pretrain_keyed(ctx, plugin, backbone, train, info, key)

        def waiting() -> None:
            self.events.emit("on_warning", message=f"pretrain: waiting for another run pretraining backbone {key}")

        with cache.key_lock(key, waiting):  # one pretraining per key, the others read it from the cache
            return self._pretrain_keyed(ctx, plugin, backbone, train, info, key)

    def _pretrain_keyed(self, ctx: RunContext, plugin: PretrainPlugin, backbone: nn.Module, train: ImageData,
                        info: RunInfo, key: str) -> tuple[nn.Module, nn.Module | None]:
        cached = cache.load_cached(key) if plugin.cacheable and self.cap is None else None
        info.tags["pretrain_cache"] = "hit" if cached else ("miss" if plugin.cacheable else "off")
        info.tags["pretrain_cache_key"] = key
        if cached is not None:
            backbone.load_state_dict(cached["backbone"])
            head = None
            if cached.get("head") is not None:
                head = ctx.build_head(_feature_dim(backbone, ctx))
                head.load_state_dict(cached["head"])
            self.events.emit("on_warning", message=f"pretrain: reusing cached backbone {key}")
            return backbone, head
        self.events.emit("on_stage_start", stage="pretrain", total=plugin.num_epochs())
        if plugin.makes_head and self.cfg.experiment.restarts > 1:
            result = self._restarted_pretrain(ctx, plugin, backbone, train)
        else:
            seed_everything(ctx.seed)  # plugins build their own modules (projection heads) from these draws
            with plugin_call("pretrain", plugin, method="pretrain"):
                result = contract.pretrain_result(Call(plugin, "pretrain", "pretrain"), plugin.pretrain(ctx, backbone))
        self.events.emit("on_stage_end", stage="pretrain")
        if plugin.cacheable and self.main and self.cap is None:
            cache.store(key, {"backbone": result.backbone.state_dict(),
                              "head": result.head.state_dict() if result.head is not None else None})
        return result.backbone.to(ctx.device), result.head

    def _head_init_features(self, ctx: RunContext, backbone: nn.Module) -> torch.Tensor:
        """The raw view's features head-init starts from. With a frozen backbone they go through the feature cache
        under the key [train] cached_views also uses for its raw copy, so later runs and search trials on the same
        backbone and data read them instead of encoding (the same numbers: the raw view draws nothing)."""
        if self.cfg.train.freeze_backbone and ctx.feature_store is not None:
            return ctx.encode_copies(backbone, "raw", 1, FROZEN_SALT, 0)[0]
        return ctx.encode(backbone)

    def _init_head(self, ctx: RunContext, plugin: HeadInitPlugin, backbone: nn.Module, features: torch.Tensor,
                   pretrained_head: nn.Module | None) -> nn.Module:
        with plugin_call("head_init", plugin, method="init_head"):
            head = plugin.init_head(ctx, backbone, features, pretrained_head)
        return contract.head(Call(plugin, "init_head", "head_init"), head, features, ctx.num_clusters).to(ctx.device)

    def _restarted_head(self, ctx: RunContext, plugin: HeadInitPlugin, backbone: nn.Module, features: torch.Tensor,
                        pretrained_head: nn.Module | None, train: ImageData) -> nn.Module:
        """`[experiment] restarts = N`: N head-inits with different seeds (each with its own resume points),
        the kept one chosen by the plugin's `restart_score` or by consensus (see HeadInitPlugin); every
        restart's score is logged (stage "restarts"), with its ACC only as evaluation where labels exist."""
        heads, partitions, scores = [], [], []
        for r in range(self.cfg.experiment.restarts):
            # restart 0 is the run's own head-init; the others differ by seed only
            sub = _restart_context(ctx, r)
            seed_everything(sub.seed + 2)
            head = self._init_head(sub, plugin, backbone, features, pretrained_head)
            partitions.append(_partition(head, features))
            head.train()
            with plugin_call("head_init", plugin, method="restart_score"):
                scores.append(plugin.restart_score(sub, head, features))
            heads.append(head)
        return heads[self._keep_restart("head_init", scores, partitions, train)]

    def _restarted_pretrain(self, ctx: RunContext, plugin: PretrainPlugin, backbone: nn.Module,
                            train: ImageData) -> PretrainResult:
        """`[experiment] restarts = N` for a pretrain stage that makes the head (DRC), where the partition is
        decided: N pretrainings with different seeds (each with its own resume points), the kept one chosen
        by the plugin's `restart_score` or by consensus, every restart logged as for head-init restarts."""
        results: list[PretrainResult] = []
        scores: list[float | None] = []
        partitions: list[np.ndarray] = []
        for r in range(self.cfg.experiment.restarts):
            sub = _restart_context(ctx, r)
            seed_everything(sub.seed)
            fresh = backbone if r == 0 else sub.build_backbone()
            with plugin_call("pretrain", plugin, method="pretrain"):
                result = contract.pretrain_result(Call(plugin, "pretrain", "pretrain"), plugin.pretrain(sub, fresh))
            with plugin_call("pretrain", plugin, method="restart_score"):
                scores.append(plugin.restart_score(sub, result))
            assert result.head is not None  # makes_head
            partitions.append(_partition(result.head, ctx.encode(result.backbone)))
            results.append(result)
        return results[self._keep_restart("pretrain", scores, partitions, train)]

    def _keep_restart(self, stage: str, scores: list[float | None], partitions: list[np.ndarray],
                      train: ImageData) -> int:
        """The restart to keep (plugin scores, else consensus); logs each restart's score (and ACC where
        labels exist, for evaluation only: the choice never sees it)."""
        from toolkit.run.restarts import consensus_scores

        criterion = "plugin"
        if any(s is None for s in scores):
            scores, criterion = list(consensus_scores(partitions)), "consensus"
        values = [float(s) for s in scores]  # type: ignore[arg-type]
        best = int(np.argmax(values))
        for r, (score, partition) in enumerate(zip(values, partitions)):
            metrics = {"score": score, "kept": float(r == best)}
            if train.labels is not None:
                metrics["acc"] = float(cluster_acc(partition, train.labels))
            self.events.emit("on_epoch_end", stage="restarts", epoch=r, metrics=metrics, state=None)
        self._warn(f"{stage}: kept restart {best} of {len(values)} by {criterion} score {values[best]:.4f}")
        return best

    def _estimated_k(self, ctx: RunContext, backbone: nn.Module, ckpt: dict[str, Any] | None, info: RunInfo) -> int:
        """K from the pretrained features (or, resuming, the K the run started with); the curve is kept
        as k_estimate.png, the choice as the tag num_clusters_estimated and one line on the console."""
        from toolkit.ops.estimate_k import estimate_k
        from toolkit.run.artifacts import figure_writers

        if ckpt is not None and ckpt.get("num_clusters"):
            return int(ckpt["num_clusters"])
        cfg = self.cfg.data
        estimate = estimate_k(ctx.encode(backbone), cfg.k_range, cfg.k_criterion, seed=ctx.seed)
        info.tags["num_clusters_estimated"] = str(estimate.k)
        info.tags["num_clusters_criterion"] = estimate.criterion
        where = ""
        figures = figure_writers()
        if self.main and figures is not None:
            path = figures.k_estimate_png(estimate, self.folder.file("k_estimate.png"))
            where = f"; curve: {path}"
        self._warn(f"estimated K = {estimate.k} by {estimate.criterion} over {cfg.k_range[0]}..{cfg.k_range[1]}{where}")
        return estimate.k

    def _optimizer(self, models: Models, plugins: dict[str, Plugin]) -> torch.optim.Optimizer:
        t = self.cfg.train
        groups = [{"params": list(models.head.parameters()), "lr": t.lr}]
        if not t.freeze_backbone:
            groups.append({"params": list(models.backbone.parameters()),
                           "lr": t.backbone_lr if t.backbone_lr is not None else t.lr})
        for plugin in plugins.values():
            for name, module in plugin.modules().items():
                groups.append({"params": list(module.parameters()), "lr": plugin.module_lr(name, t.lr)})
        groups = [g for g in groups if g["params"]]
        if t.optimizer == "sgd":
            optimizer: torch.optim.Optimizer = torch.optim.SGD(groups, lr=t.lr, momentum=t.momentum,
                                                               weight_decay=t.weight_decay, nesterov=t.nesterov)
        else:
            cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
            optimizer = cls(groups, lr=t.lr, weight_decay=t.weight_decay)
        remember_base_rates(optimizer)
        return optimizer

    def _lr_factor(self, ctx: RunContext) -> Callable[[int, int], float] | None:
        """(epoch, step) -> the factor of the base learning rates; None for a constant schedule."""
        t = self.cfg.train
        if t.schedule == "constant":
            return None
        per_epoch = ctx.schedule.steps_per_epoch
        total, warmup = t.epochs * per_epoch, int(round(t.warmup_epochs * per_epoch))
        return lambda epoch, step: lr_factor(t.schedule, (epoch - 1) * per_epoch + step, total, warmup, t.min_lr_ratio)

    def _share(self, models: Models, plugins: dict[str, Plugin]) -> None:
        """Data-parallel: train through DDP wrappers from rank 0's weights (set-up ran replicated on every
        rank); a frozen backbone is only copied. No-op in a single process."""
        par = self.parallel
        if par is None:
            return
        if models.freeze_backbone:
            par.broadcast([models.backbone])
        else:
            models.train_backbone = par.wrap(models.backbone)
        models.train_head = par.wrap(models.head)
        par.share_plugin_modules([m for p in plugins.values() for m in p.modules().values()])
        models.parallel = par

    def _restore(self, state: TrainState, ckpt: dict[str, Any]) -> None:
        try:
            state.models.backbone.load_state_dict(ckpt["backbone"])
            state.models.head.load_state_dict(ckpt["head"])
            if state.models.ema is not None:
                state.models.ema.load_state_dict(ckpt["ema"])
            for slot, plugin in state.plugins.items():
                mods = plugin.modules()
                for name, sd in ckpt["plugin_modules"].get(slot, {}).items():
                    mods[name].load_state_dict(sd)
                plugin.load_state_dict(ckpt["plugin_state"].get(slot, {}))
            state.optimizer.load_state_dict(ckpt["optimizer"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise CheckpointMismatch(f"{self.folder.last_checkpoint}: does not match this recipe "
                                     f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
        state.epoch = int(ckpt["epoch"])
        state.history = list(ckpt["history"])
        for key, value in ckpt.get("label_metrics", {}).items():  # published before the interruption
            state.label_metrics.setdefault(key, value)
        self.events.emit("on_warning", message=f"resuming after epoch {state.epoch}")

    # -------------------------------------------------------------------------------- finish
    def _finish(self, info: RunInfo, state: TrainState, preds: Predictions, metrics: dict[str, float],
                evalset: ImageData, calibration: CalibrationPlugin, start: float, meta: dict[str, Any]) -> dict[str, Any]:
        from toolkit.run.artifacts import write_artifacts  # plotting is only needed at the end

        exp = self.cfg.experiment
        summary: dict[str, Any] = {
            "recipe": exp.name,
            "dataset": self.cfg.data.dataset,
            "protocol": exp.protocol,
            "oracle": exp.oracle,
            "num_clusters": info.num_clusters,
            "n_train": info.n_train,
            "n_eval": info.n_eval,
            "epochs": state.epoch,
            "device": str(info.device),
            "seed": exp.seed,
            "plugins": {s: p["name"] for s, p in info.plugins.items()},
            "evaluated": info.has_labels,
        }
        for key in HEADLINE_METRICS:
            summary[key] = metrics.get(key)
        summary.update({k: v for k, v in metrics.items() if k not in summary})
        if self.label_probe is not None:
            summary.update({k: v for k, v in self.label_probe.latest.items() if k not in summary})
        if not info.has_labels:
            summary["note"] = "the data set has no labels: only label-free metrics are reported"
        if self.skipped_files:
            summary["skipped_images"] = len(self.skipped_files)
            summary["skipped_files"] = self.skipped_files
        if self.feature_cache is not None and (self.feature_cache.hits or self.feature_cache.misses):
            info.tags["feature_cache"] = f"{self.feature_cache.hits} read, {self.feature_cache.misses} encoded"
        summary["seconds"] = round(time.perf_counter() - start, 3)
        summary["mlflow_run_id"] = info.mlflow_run_id
        if self.main:
            write_artifacts(self.output_dir, self.recipe, state, preds, evalset.labels, summary, meta)
        self.events.emit("on_run_end", summary=summary, output_dir=self.output_dir)
        return summary


def _classifier(backbone: nn.Module, head: nn.Module, device: torch.device, chunk: int = 1024):  # noqa: ANN202
    """Clustering-head probabilities for normalised images, in eval mode, restoring the modes after."""

    @torch.no_grad()
    def classify(images: torch.Tensor) -> torch.Tensor:
        modes = backbone.training, head.training
        backbone.eval()
        head.eval()
        try:
            outs = [head(backbone(x.to(device))).float().softmax(1) for x in images.split(chunk)]
        finally:
            backbone.train(modes[0])
            head.train(modes[1])
        return torch.cat(outs) if outs else torch.empty(0, device=device)

    return classify


def _restart_context(ctx: RunContext, r: int) -> RunContext:
    """Restart r's context: its own seed and resume points (restart 0 keeps the run's seed)."""
    return dataclasses.replace(ctx, seed=ctx.seed + 1_000 * r, _last_save={},
                               checkpoint_dir=None if ctx.checkpoint_dir is None else ctx.checkpoint_dir / f"restart_{r}")


@torch.no_grad()
def _partition(head: nn.Module, features: torch.Tensor) -> np.ndarray:
    """The head's cluster ids for `features` (eval mode; the head is left in eval mode)."""
    head.eval()
    return torch.cat([head(part.float()).argmax(1) for part in features.split(4096)]).cpu().numpy()


def _all_identical(images: torch.Tensor, chunk: int = 4096) -> bool:
    """Whether every image equals the first (checked chunk by chunk: real data differs in the first one)."""
    if len(images) < 2:
        return False
    first = images[:1]
    return all(bool((images[i:i + chunk] == first).all()) for i in range(0, len(images), chunk))


def _feature_dim(backbone: nn.Module, ctx: RunContext) -> int:
    dim = getattr(backbone, "out_dim", None)
    if dim is None:
        with torch.no_grad():
            dim = int(backbone.eval()(ctx.view("raw", torch.arange(2))).shape[1])
        backbone.train()
    return int(dim)

"""The data plugins receive: unlabeled images, batches, per-epoch state. No ground truth anywhere.

Labels live only in the engine's evaluation path; these types have no field that could carry them,
so a plugin cannot reach them during training (tests/core/test_no_label_leak.py checks this).
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Protocol

import torch
from torch import nn

from toolkit.files import load_safe, save_atomic
from toolkit.data.base import ImageShape

if TYPE_CHECKING:
    from toolkit.api.stage_loop import EpochLoop, Resumable
    from toolkit.data.views import AugmentConfig, BatchView
    from toolkit.run.events import EventBus


@dataclass(frozen=True)
class UnlabeledImages(ImageShape):
    """The training images as plugins see them: uint8 [N, C, H, W], no labels."""

    images: torch.Tensor
    name: str


class PluginEvents:
    """What plugins may do with the event bus: emit. The observers (which include the engine's
    ground-truth probe and the tracker) stay private, so no attribute path leads a plugin to labels."""

    def __init__(self, bus: "EventBus") -> None:
        self._bus = bus

    def emit(self, event: str, **kwargs: object) -> None:
        self._bus.emit(event, **kwargs)


class FeatureStore(Protocol):
    """Where encoded features outlive a run (the engine gives a disk cache shared by runs and search trials)."""

    def fetch(self, key: str, make: Callable[[], torch.Tensor]) -> torch.Tensor:
        """The tensor stored under `key`, made (once, also across processes) by `make` when missing."""
        ...


@dataclass
class Views:
    """The three views of an image batch: raw (normalise only), weak and strong augmentation."""

    raw: "BatchView"
    weak: "BatchView"
    strong: "BatchView"

    def get(self, name: str) -> "BatchView":
        """The view called ``name`` ("raw", "weak" or "strong"), for plugins that pick a view from an option."""
        return getattr(self, name)

    def custom(self, cfg: "AugmentConfig") -> "BatchView":
        """A plugin's own augmentation, normalised like the other views (e.g. a pretext's pair view that
        should be stronger than the self-labeling stage's strong view)."""
        from toolkit.data.views import BatchView

        return BatchView(cfg, self.raw.mean.tolist(), self.raw.std.tolist())


@dataclass(frozen=True)
class Schedule:
    """The self-labeling stage's length, for plugins whose behaviour depends on progress (ramps, rounds)."""

    #: Self-labeling epochs of the run ([train] epochs); epochs are numbered 1..epochs.
    epochs: int
    #: Optimizer steps per self-labeling epoch (full batches; the last partial batch is dropped).
    steps_per_epoch: int

    def progress(self, epoch: int, step: int = 0) -> float:
        """Fraction of self-labeling done at the start of `step` of `epoch`, in [0, 1]."""
        total = max(self.epochs * self.steps_per_epoch, 1)
        return min(max(((epoch - 1) * self.steps_per_epoch + step) / total, 0.0), 1.0)


@dataclass
class RunContext:
    """Everything a plugin may use: data without labels, views, device, seed, logging.

    `build_backbone()` makes a fresh backbone as [model] describes; `build_head(feature_dim)` makes the
    clustering head in the recipe's shape (head-init plugins should fill one of these, so that a
    resumed run can rebuild it).
    """

    data: UnlabeledImages
    num_clusters: int
    device: torch.device
    seed: int
    views: Views
    events: "PluginEvents"
    build_backbone: Callable[[], nn.Module]
    build_head: Callable[[int], nn.Module]
    batch_size: int = 256
    #: The self-labeling schedule (total epochs, steps per epoch).
    schedule: Schedule = field(default_factory=lambda: Schedule(0, 0))
    #: Where long plugin stages keep their resume points (None: no resume points, e.g. in `predict`).
    checkpoint_dir: Path | None = None
    #: Where plugins write files worth keeping with the run (figures, samples); None: nowhere.
    artifact_dir: Path | None = None
    #: Encoded copies of frozen modules' views, shared across runs (see encode_copies); None: not kept.
    feature_store: FeatureStore | None = None
    #: Content hash of the training images (part of a feature-store key); "" keeps nothing.
    data_fingerprint: str = ""
    #: Computes raw-view features elsewhere ([train] encode = "ray": Ray Data tasks on a cluster), called as
    #: `remote_encoder(module, raw_view, images, chunk)`; None: in this process.
    remote_encoder: Callable[[nn.Module, "BatchView", torch.Tensor, int], torch.Tensor] | None = None
    _last_save: dict[str, float] = field(default_factory=dict, repr=False)

    def generator(self, *salt: int) -> torch.Generator:
        """A CPU generator seeded from the run seed and a salt (stage, epoch): same salt, same draws.

        Seeding per epoch (not one stream for the run) is what makes resumed runs match exactly.
        """
        g = torch.Generator()
        value = self.seed
        for s in salt:
            value = (value * 1_000_003 + int(s)) % (2**63 - 1)
        g.manual_seed(value)
        return g

    @contextmanager
    def seeded(self, *salt: int) -> Iterator[None]:
        """Build modules inside this block: the global RNG (which weight initialisation draws from) is
        seeded from the run seed and `salt` (no salt: the run seed itself) and restored afterwards, so a
        plugin's initialisation is reproducible and leaves the rest of the run's draws untouched."""
        value = self.seed
        for s in salt:
            value = (value * 1_000_003 + int(s)) % (2**63 - 1)
        with torch.random.fork_rng(devices=_rng_devices(self.device)):
            torch.manual_seed(value)
            yield

    def epoch_loop(self, stage: str, epochs: int, state: "Resumable", salt: tuple[int, ...], plugin: str,
                   seed_global: bool = False) -> "EpochLoop":
        """The resumable, seeded, logged, checked epoch loop of a plugin-owned stage: see
        `toolkit.api.stage_loop`. `state` is what a resume point saves and restores (e.g. `Checkpointed`);
        `seed_global` also seeds the global RNG per epoch, for modules with dropout."""
        from toolkit.api.stage_loop import EpochLoop

        return EpochLoop(self, stage, epochs, state, salt, plugin, seed_global)

    def batches(self, generator: torch.Generator, batch_size: int | None = None, shuffle: bool = True,
                drop_last: bool = False) -> Iterator[torch.Tensor]:
        """Yield index tensors over the data set (shuffled with `generator`)."""
        n = len(self.data)
        bs = batch_size or self.batch_size
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        stop = n - (n % bs) if drop_last and n >= bs else n
        every = (order[start:start + bs] for start in range(0, stop, bs))
        from toolkit.api import step_cap

        cap = step_cap.active()
        yield from every if cap is None else cap.steps(every, -(-stop // bs))

    def chunked(self, n: int, chunk: int, fn: Callable[[int, int], "tuple[torch.Tensor, ...]"]) -> list[torch.Tensor]:
        """A whole-data pass: `fn(start, stop)` over rows [0, n) in chunks, each of its outputs concatenated.

        Use it (rather than a hand-written loop) for passes over every image or every generated sample, so a
        rehearsal (`[train] max_steps`) can cut the pass short while keeping the outputs' shapes."""
        from toolkit.api.step_cap import chunked

        return chunked(n, chunk, fn)

    def images(self, index: torch.Tensor) -> torch.Tensor:
        """uint8 images for `index`, on the run's device.

        Device-resident data ([train] data_on_device) is gathered there; host data is gathered into
        pinned memory first, so the copy to a GPU is truly non-blocking.
        """
        source = self.data.images
        batch = source[index.to(source.device, non_blocking=True)]
        if self.device.type == "cuda" and batch.device.type == "cpu":
            batch = batch.pin_memory()
        return batch.to(self.device, non_blocking=True)

    def view(self, name: str, index: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Float view `name` (raw/weak/strong) of the images at `index`, on the device."""
        return self.views.get(name)(self.images(index), generator)

    @torch.no_grad()
    def encode(self, module: nn.Module, view: str = "raw", batch_size: int | None = None) -> torch.Tensor:
        """Run `module` over every image (eval mode, given view) and return stacked outputs on the device."""
        remote = self._remote(view)
        if remote is not None:
            return remote(module, self.views.raw, self.data.images, batch_size or 1024).to(self.device)
        was_training = module.training
        module.eval()
        (out,) = self.chunked(len(self.data), batch_size or 1024,
                              lambda a, b: (module(self.view(view, torch.arange(a, b))).float(),))
        module.train(was_training)
        return out

    def _remote(self, view: str) -> Callable[[nn.Module, "BatchView", torch.Tensor, int], torch.Tensor] | None:
        """The remote encoder for a pass over `view`: only the raw view (it draws nothing, so a remote pass gives
        what a local one does), and never in a rehearsal (which cuts passes short here)."""
        from toolkit.api import step_cap

        return self.remote_encoder if view == "raw" and step_cap.active() is None else None

    def encode_copies(self, module: nn.Module, view: str, copies: int, *salt: int,
                      batch_size: int | None = None) -> torch.Tensor:
        """[copies, N, D]: `copies` independently augmented encodings of every image (eval mode, no gradient),
        the random draws seeded from `salt`. For a frozen module a stage can encode its view a few times once
        and cycle through the copies by epoch instead of encoding every epoch (finite augmentation).

        With a feature store the copies are kept under a key of everything they depend on (the module's weights,
        the view's settings, the images, copies, salt, seed, batch size, device type), so a later run or search
        trial with the same frozen backbone reads them instead of encoding again; any change is a new key."""
        chunk = batch_size or 1024

        def make() -> torch.Tensor:
            remote = self._remote(view)
            if remote is not None:  # the raw view draws nothing: every copy is the same pass
                return remote(module, self.views.raw, self.data.images, chunk).unsqueeze(0).expand(copies, -1, -1)
            was_training = module.training
            module.eval()
            out = []
            with torch.no_grad():
                for copy in range(copies):
                    gen = self.generator(*salt, copy)
                    out.extend(self.chunked(len(self.data), chunk,
                                            lambda a, b, g=gen: (module(self.view(view, torch.arange(a, b), g)).float(),)))
            module.train(was_training)
            return torch.stack(out)

        if self.feature_store is None or not self.data_fingerprint:
            return make()
        from toolkit.api.feature_key import copies_key

        key = copies_key(module, self.views.get(view), view, self.data_fingerprint, copies, salt, self.seed, chunk,
                         self.device.type)
        return self.feature_store.fetch(key, lambda: make().cpu()).to(self.device)

    def resume_point(self, stage: str) -> dict | None:
        """What `save_point(stage, ...)` last saved in this output folder, when the run is being resumed
        (None otherwise). Read with weights_only=True; holds "epoch" plus the plugin's own entries."""
        if self.checkpoint_dir is None:
            return None
        path = self.checkpoint_dir / f"{stage}.pt"
        return load_safe(path) if path.is_file() else None

    def save_point(self, stage: str, epoch: int, state: dict, final: bool = False) -> None:
        """Atomically save a long stage's state after `epoch`, so `--resume` continues inside the stage.

        Writes at most every TOOLKIT_STAGE_CHECKPOINT_SECONDS (default 30) and always when `final`:
        resumed runs stay exact whichever epoch was saved, because every epoch's draws are seeded.
        """
        if self.checkpoint_dir is None:
            return
        every = float(os.environ.get("TOOLKIT_STAGE_CHECKPOINT_SECONDS", "30"))
        now = time.monotonic()
        if not final and now - self._last_save.setdefault(stage, now) < every:
            return
        save_atomic({"epoch": epoch, **state}, self.checkpoint_dir / f"{stage}.pt")
        self._last_save[stage] = now

    def log_epoch(self, stage: str, epoch: int, metrics: dict[str, float]) -> None:
        """Report a finished epoch of a plugin-owned stage (progress bars, MLflow, Ray Tune listen)."""
        self.events.emit("on_epoch_end", stage=stage, epoch=epoch, metrics=metrics, state=None)

    def log_artifact(self, path: Path, artifact_path: str = "") -> None:
        """Attach a file the plugin wrote (under `artifact_dir`) to the run: MLflow stores a copy."""
        self.events.emit("on_artifact", path=Path(path), artifact_path=artifact_path)

    def warn(self, message: str) -> None:
        """Report a problem that does not stop the run: it reaches the console, the journal and MLflow."""
        self.events.emit("on_warning", message=message)

    def publish_labels(self, stage: str, epoch: int, name: str, index: torch.Tensor, labels: torch.Tensor) -> None:
        """Report pseudo-labels with their data-set positions (e.g. prototype or reliable labels).

        Where ground truth exists the engine logs their accuracy as `<name>_acc` of that stage and
        epoch (cluster ids matched to classes on the published pairs). Nothing comes back to the plugin.
        """
        self.events.emit("on_pseudo_labels", stage=stage, epoch=epoch, name=name,
                         index=index.detach().long().cpu(), labels=labels.detach().long().cpu())


class _Lazy:
    """A Batch field the engine may leave to first use: a view's images, features and logits are computed only
    when some plugin reads them (a run whose plugins never read the strong view never augments or forwards it)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name, self.slot = name, "_" + name

    def __get__(self, obj: "Batch | None", objtype: type | None = None) -> torch.Tensor | None:
        if obj is None:
            return None  # the dataclass default: not computed yet
        value = obj.__dict__.get(self.slot)
        if value is None:
            if obj._view_fn is None:
                raise AttributeError(f"Batch.{self.name} was not computed and this batch cannot compute it")
            obj._view_fn(obj, self.name)
            value = obj.__dict__.get(self.slot)
        return value

    def __set__(self, obj: "Batch", value: torch.Tensor | None) -> None:
        obj.__dict__[self.slot] = value


@dataclass
class Batch:
    """One training batch: its images' positions in the data set, views, and the clustering head's outputs.

    Row i of every tensor here is the image at data-set position `positions[i]`. Use `positions` to look up
    per-image state a plugin keeps for the whole data set (e.g. `self.labels[batch.positions]`); a
    `Selection` names batch rows (0..B-1), never positions. Both logits carry the gradient (detach
    `logits_weak` when using it as a target). Extra views' features are computed lazily, without gradient,
    through `features_of`. `epoch` is 1-based, `step` 0-based (see `RunContext.schedule`). A view that no
    plugin declares (`Plugin.batch_views`) is augmented and forwarded only if something reads it.

    Two things make the rows a step trains on differ from the batch a paper computes its statistics over:
    [train] sub_batch_size (the batch of B is planned once, then trained in chunks: `whole` is that batch and
    `rows_in_whole` this chunk's rows of it) and data-parallel ranks (each holds a shard: `gather` gives every
    rank's rows). A plugin that needs batch-wide statistics computes them on `batch.planned`, gathered, once
    (`memo`), and takes its own rows; a plugin that does not care sees an ordinary, smaller batch.
    """

    positions: torch.Tensor
    epoch: int
    step: int
    weak: torch.Tensor = _Lazy()  # type: ignore[assignment]
    strong: torch.Tensor = _Lazy()  # type: ignore[assignment]
    features_weak: torch.Tensor = _Lazy()  # type: ignore[assignment]
    features_strong: torch.Tensor = _Lazy()  # type: ignore[assignment]
    logits_weak: torch.Tensor = _Lazy()  # type: ignore[assignment]
    logits_strong: torch.Tensor = _Lazy()  # type: ignore[assignment]
    #: Fills in a view the engine did not compute up front (see `Plugin.batch_views`): `_view_fn(self, "weak")`.
    _view_fn: "Callable[[Batch, str], None] | None" = field(default=None, repr=False)
    _raw_fn: Callable[[], torch.Tensor] = field(repr=False, default=None)  # type: ignore[assignment]
    _encode_fn: Callable[[torch.Tensor], torch.Tensor] = field(repr=False, default=None)  # type: ignore[assignment]
    _cache: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    #: [train] sub_batch_size: the planned batch this chunk belongs to, and the chunk's rows in it.
    whole: "Batch | None" = field(default=None, repr=False)
    rows_in_whole: torch.Tensor | None = field(default=None, repr=False)
    _gather_fn: Callable[[torch.Tensor], tuple[torch.Tensor, slice]] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return int(self.positions.shape[0])

    def computed(self, name: str) -> torch.Tensor | None:
        """The field `name` (e.g. "logits_strong") if it was computed, without computing it."""
        return self.__dict__.get("_" + name)

    @property
    def planned(self) -> "Batch":
        """The batch selection and batch-wide statistics are computed on: `whole`, or this batch itself."""
        return self.whole if self.whole is not None else self

    def own_rows(self, x: torch.Tensor) -> torch.Tensor:
        """Rows of `x` (one per row of `planned`) that belong to this batch (all of them unless a chunk)."""
        return x if self.rows_in_whole is None else x[self.rows_in_whole]

    def gather(self, x: torch.Tensor) -> tuple[torch.Tensor, slice]:
        """`x` (one row per row of this batch, no gradient) with every data-parallel rank's rows of the same
        batch, in rank order, and the slice of the result that is this rank's; in one process `(x, all rows)`.
        Call it on `planned` (all ranks must call it the same number of times, on every step)."""
        if self._gather_fn is None:
            return x, slice(0, int(x.shape[0]))
        return self._gather_fn(x)

    def memo(self, key: str, make: Callable[[], torch.Tensor]) -> torch.Tensor:
        """`make()` computed once per batch (e.g. targets shared by all chunks of a planned batch)."""
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    @property
    def raw(self) -> torch.Tensor:
        """The batch's images with normalisation only (no augmentation), computed on first use."""
        if "raw" not in self._cache:
            self._cache["raw"] = self._raw_fn()
        return self._cache["raw"]

    def features_of(self, view: str, grad: bool = False) -> torch.Tensor:
        """Backbone features of a view ('raw', 'weak' or 'strong').

        Without `grad` (the default) they are detached, so a loss on them never reaches the backbone
        (stop-gradient, as CDC's calibration head needs); with `grad=True` the backbone is trained too.
        """
        if view in ("weak", "strong"):
            feats = self.features_weak if view == "weak" else self.features_strong
            return feats if grad else feats.detach()
        key = f"features_{view}_{'grad' if grad else 'nograd'}"
        if key not in self._cache:
            images = self.raw if view == "raw" else getattr(self, view)
            if grad:
                self._cache[key] = self._encode_fn(images).float()
            else:
                with torch.no_grad():
                    self._cache[key] = self._encode_fn(images).float()
        return self._cache[key]


@dataclass
class EpochState:
    """Whole-data-set view at the start of an epoch: raw-view features and both heads' probabilities.

    `epoch` is the epoch about to start (1..total_epochs); the features and probabilities are those of the
    model as it ended the previous epoch (epoch 1: right after head-init). Rows are data-set positions.
    `probs` is the clustering head's softmax, `confidence` the calibration plugin's prediction.
    `classify(images)` gives the clustering head's probabilities for normalised images (eval mode,
    no gradient), e.g. to check what the current model makes of generated samples.
    """

    epoch: int
    total_epochs: int
    features: torch.Tensor
    probs: torch.Tensor
    confidence: torch.Tensor
    classify: Callable[[torch.Tensor], torch.Tensor] | None = field(default=None, repr=False)


@dataclass
class Selection:
    """Which batch rows get which pseudo-label, with what weight, for a named loss term.

    `rows` are batch rows (long, 0..B-1; not `Batch.positions`), `labels` cluster ids (long, 0..K-1), one
    per row; `weights` (optional) one non-negative float per row. The loss is cross-entropy of the clustering
    head's logits on `view` ('weak' or 'strong'). `normalize`: 'selected' averages over the selected rows,
    'batch' over the whole batch (FixMatch). The engine checks all of this where it receives a Selection.
    """

    rows: torch.Tensor
    labels: torch.Tensor
    weights: torch.Tensor | None = None
    view: str = "strong"
    name: str = "cluster"
    normalize: str = "selected"
    scale: float = 1.0

    def __len__(self) -> int:
        return int(self.rows.shape[0])


def _rng_devices(device: torch.device) -> list[int]:
    """The CUDA devices whose RNG a fork saves and restores (none on the CPU)."""
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]

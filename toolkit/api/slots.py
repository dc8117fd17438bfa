"""The contracts of the five hook points. A plugin subclasses one of these and declares its options.

Each slot gets explicit inputs and returns explicit outputs (pretrain -> backbone; head-init -> head;
selection -> Selection; calibration -> probabilities and losses; generation -> losses). Plugins never
receive the engine itself, so data flow stays visible, and never receive ground-truth labels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar, get_args

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from toolkit.api.context import Batch, EpochState, RunContext, Selection

SLOTS: tuple[str, ...] = ("pretrain", "head_init", "selection", "calibration", "generation")


class NoOptions(BaseModel):
    """Options model of a plugin that takes none (any key is then an error)."""

    model_config = ConfigDict(extra="forbid")


OptionsT = TypeVar("OptionsT", bound=BaseModel)


class Plugin(Generic[OptionsT]):
    """Common base: an options model, trainable modules, and resumable state.

    Subclass a slot base with your options model as its type argument, e.g.
    `class MySelection(SelectionPlugin[MyOptions])`: `Options` is then set from it and `self.options` is typed
    as `MyOptions`, so no casts are needed. The options model should forbid extra keys
    (`ConfigDict(extra="forbid")`), so a typo in a recipe is caught at validation.
    `api_version` is the range of toolkit.API_VERSION the plugin was written against.
    """

    slot: ClassVar[str] = ""
    #: The entry-point name the recipe used (set when the plugin is built from a recipe).
    name: str = ""
    Options: ClassVar[type[BaseModel]] = NoOptions
    api_version: ClassVar[str] = ">=2.0,<3.0"
    options: OptionsT

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "Options" in cls.__dict__:
            return
        for base in cls.__dict__.get("__orig_bases__", ()):
            for arg in get_args(base):
                if isinstance(arg, type) and issubclass(arg, BaseModel):
                    cls.Options = arg
                    return

    def __init__(self, options: OptionsT | None = None) -> None:
        self.options = options if options is not None else self.Options()  # type: ignore[assignment]

    def modules(self) -> dict[str, nn.Module]:
        """Trainable modules owned by the plugin: added to the self-labeling optimizer and to checkpoints."""
        return {}

    def batch_views(self) -> frozenset[str]:
        """The augmented views ("weak", "strong") whose images, features or logits this plugin reads from a
        `Batch` (selection, calibration and generation plugins). The engine augments and forwards up front only
        the views some plugin of the run declares, together in one forward with [train] view_forward = "joint";
        a view read without being declared is still computed, on first use, in a forward of its own.
        The default declares both; declare less to save a forward (GCC's generation reads only "weak")."""
        return frozenset({"weak", "strong"})

    def module_lr(self, name: str, base_lr: float) -> float:
        """Learning rate of the module `modules()[name]` (default: the recipe's `[train] lr`, `base_lr`)."""
        return base_lr

    def state_dict(self) -> dict[str, Any]:
        """Extra (non-module) state to checkpoint, for exact resume."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what state_dict() returned."""


@dataclass
class PretrainResult:
    """A trained backbone, optionally with a clustering head (one-stage methods such as DRC)."""

    backbone: nn.Module
    head: nn.Module | None = None
    metrics: dict[str, float] = field(default_factory=dict)


class PretrainPlugin(Plugin[OptionsT]):
    """Slot `toolkit.pretrain`: how the backbone gets its representation.

    Called once per run (the engine caches the result by a hash of the recipe's data, model and
    pretrain sections plus the data's content). `backbone` is freshly built from [model]; return it
    trained. Report per-epoch losses with `ctx.log_epoch("pretrain", epoch, {...})`.
    """

    slot = "pretrain"
    #: False for plugins whose result must not be cached (e.g. `none`, which does no work).
    cacheable: ClassVar[bool] = True
    #: True for plugins that also return the clustering head (then its shape keys the cache).
    makes_head: ClassVar[bool] = False

    def num_epochs(self) -> int | None:
        """Epoch count, for progress bars (None when unknown)."""
        return getattr(self.options, "epochs", None)

    def pretrain(self, ctx: RunContext, backbone: nn.Module) -> PretrainResult:
        """Train `backbone` (fresh, as [model] describes) and return it in a PretrainResult."""
        raise NotImplementedError

    def restart_score(self, ctx: RunContext, result: PretrainResult) -> float | None:
        """For plugins that make the head: with `[experiment] restarts = N` the engine runs `pretrain` N times
        (seeds differ) and keeps the result of the highest score. Return a label-free score (higher is
        better), or None for the engine's default, consensus (as for head-init restarts)."""
        return None


class HeadInitPlugin(Plugin[OptionsT]):
    """Slot `toolkit.head_init`: how the clustering head starts.

    `features` are the backbone's raw-view features of every training image [N, D] on ctx.device
    (backbone in eval mode). `pretrained_head` is what the pretrain plugin returned, if anything.
    Return a module mapping features [B, D] to logits [B, num_clusters].
    """

    slot = "head_init"

    def init_head(self, ctx: RunContext, backbone: nn.Module, features: torch.Tensor,
                  pretrained_head: nn.Module | None) -> nn.Module:
        """A head mapping features [B, D] to logits [B, num_clusters] (build it with `ctx.build_head`)."""
        raise NotImplementedError

    def restart_score(self, ctx: RunContext, head: nn.Module, features: torch.Tensor) -> float | None:
        """With `[experiment] restarts = N` the engine runs `init_head` N times (seeds differ) and keeps
        the head of the highest score. Return a label-free score of this head's partition (higher is
        better), or None for the engine's default: the restart whose partition agrees most with the
        others' (mean adjusted Rand index, a consensus)."""
        return None


class SelectionPlugin(Plugin[OptionsT]):
    """Slot `toolkit.selection`: which samples get which pseudo-label, per batch.

    `on_epoch_start` sees the whole data set's features and probabilities (e.g. for kNN consistency);
    `select` returns one Selection, or several (one per loss term, e.g. reliable CE + consistency).
    """

    slot = "selection"

    def on_epoch_start(self, ctx: RunContext, state: EpochState) -> None:
        """Called before each self-labeling epoch; `state.epoch` is the epoch about to start (1-based)."""

    def select(self, batch: Batch, confidence: torch.Tensor) -> Selection | list[Selection]:
        """Pseudo-labels for this batch. `confidence` is the calibration plugin's probabilities on the weak view
        ([B, K], rows sum to 1, no gradient). Selection rows are batch rows (0..B-1), not `batch.positions`."""
        raise NotImplementedError


class CalibrationPlugin(Plugin[OptionsT]):
    """Slot `toolkit.calibration`: how confidence is made honest.

    `setup` receives the clustering head (a calibration head may copy it). `confidence` gives the
    probabilities selection trusts (weak view); `loss` adds calibration terms (already weighted);
    `predict` turns features and clustering logits of any images into the final probabilities.
    """

    slot = "calibration"
    #: True when `predict` differs from the clustering head's softmax (then both heads are reported).
    separate_prediction: ClassVar[bool] = False

    def setup(self, ctx: RunContext, head: nn.Module, feature_dim: int) -> None:
        """Called once before self-labeling with the clustering head."""
        self.head = head

    def confidence(self, batch: Batch) -> torch.Tensor:
        """Probabilities [B, K] (rows sum to 1) that selection trusts, from the weak view."""
        return batch.logits_weak.detach().float().softmax(dim=1)

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Extra, already weighted loss terms (scalar tensors) by name."""
        return {}

    def predict(self, features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """Final probabilities [N, K] (rows sum to 1) for any images' features and clustering logits."""
        return logits.float().softmax(dim=1)


class GenerationPlugin(Plugin[OptionsT]):
    """Slot `toolkit.generation`: whether and how synthetic samples join training.

    `on_epoch_start` may (re)train a generator on the current pseudo-labels (`state.confidence`);
    `loss` returns extra weighted loss terms computed from generated samples for this batch, using
    `forward(images) -> (features, logits)` of the current backbone + clustering head.
    """

    slot = "generation"

    def setup(self, ctx: RunContext, head: nn.Module, feature_dim: int) -> None:
        """Called once before self-labeling with the clustering head."""
        self.head = head

    def on_epoch_start(self, ctx: RunContext, state: EpochState) -> None:
        """Called before each self-labeling epoch; `state.epoch` is the epoch about to start (1-based)."""

    def loss(self, batch: Batch, forward: Any) -> dict[str, torch.Tensor]:
        """Extra, already weighted loss terms (scalar tensors) by name for this batch. `forward(images)` runs
        the training backbone and clustering head (features, logits) with gradient; `forward(images,
        keep_bn_statistics=True)` leaves their BatchNorm running statistics to the real data (for images that
        are not the data, e.g. generated ones)."""
        return {}


SLOT_BASES: dict[str, type[Plugin[Any]]] = {
    "pretrain": PretrainPlugin,
    "head_init": HeadInitPlugin,
    "selection": SelectionPlugin,
    "calibration": CalibrationPlugin,
    "generation": GenerationPlugin,
}

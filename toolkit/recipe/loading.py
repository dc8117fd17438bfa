"""TOML recipes -> validated Recipe objects, with --set overrides and one-line errors.

A recipe names one plugin per slot (`[selection] method = "threshold"`) with that plugin's options
beside it; the plugin's own pydantic model validates those options, so a typo anywhere is reported
with the recipe's file, section and key.
"""

from __future__ import annotations

import copy
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import tomli_w
from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, ValidationInfo,
                      field_validator)

from toolkit.data.config import DataConfig
from toolkit.data.views import AugmentConfig
from toolkit.errors import PluginError, RecipeError
from toolkit.api.slots import SLOTS, Plugin
from toolkit.nn.config import BackboneConfig, check_backbone_name
from toolkit.recipe import auto
from toolkit.recipe.tune_section import TuneConfig, check_space_keys, parse_tune
from toolkit.registry import entry_points as plugin_registry


def _auto_flag(value: Any) -> bool | str:
    """true, false or "auto" (any case); anything else is a one-line recipe error."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("auto", "true", "false"):
        v = value.strip().lower()
        return v if v == "auto" else v == "true"
    raise ValueError('must be true, false or "auto"')


AutoFlag = Annotated[Union[bool, Literal["auto"]], BeforeValidator(_auto_flag)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExperimentConfig(_Strict):
    name: str = "experiment"
    seed: int = Field(0, ge=0)
    protocol: Literal["transductive", "split"] = "transductive"
    oracle: bool = False
    device: str = "auto"
    description: str = ""
    #: Independent head-init restarts (different seeds); the head kept is chosen without labels.
    restarts: int = Field(1, ge=1, le=100)


class ModelConfig(_Strict):
    """Backbone by name with its options, and the clustering head's hidden width (None = linear)."""

    backbone: str = "resnet18"
    hidden_dims: list[int] = Field(default_factory=lambda: [512, 512])
    width: int = Field(64, ge=1)
    out_dim: int | None = Field(None, ge=1)
    weights: str | None = None
    head_hidden_dim: int | None = Field(None, ge=1)
    sobel: bool = Field(False, description="IIC's / PICA's fixed Sobel front end: grey level, then its two Sobel "
                                           "gradients, before the backbone (colour is then no clustering cue)")

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, value: str) -> str:
        return check_backbone_name(value)

    @field_validator("hidden_dims")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        if not value or any(d < 1 for d in value):
            raise ValueError("must be a non-empty list of positive integers")
        return value

    def backbone_config(self) -> BackboneConfig:
        return BackboneConfig(name=self.backbone, hidden_dims=self.hidden_dims, width=self.width, out_dim=self.out_dim,
                              weights=self.weights, sobel=self.sobel)


class ViewsConfig(_Strict):
    weak: AugmentConfig = Field(default_factory=AugmentConfig)
    strong: AugmentConfig = Field(default_factory=AugmentConfig)


class TrainConfig(_Strict):
    """The self-labeling stage: optimiser and epochs (the backbone is fine-tuned unless frozen)."""

    epochs: int = Field(10, ge=0)
    batch_size: int = Field(256, ge=2)
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0)
    backbone_lr: float | None = Field(None, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = Field(False, description="optimizer = sgd: Nesterov momentum (SPICE's stage 3, FixMatch)")
    schedule: Literal["constant", "cosine", "warmup_cosine", "fixmatch_cosine"] = Field(
        "constant", description="learning-rate schedule over the self-labeling steps (toolkit/run/lr_schedule.py)")
    warmup_epochs: float = Field(0.0, ge=0, description="schedule = warmup_cosine: epochs of linear warm-up")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="cosine schedules: the last step's rate / the base rate")
    view_forward: Literal["joint", "separate"] = Field(
        "joint", description="joint: weak and strong views in one forward (one BatchNorm batch, as FixMatch); "
                             "separate: one forward per view (its own BatchNorm statistics, as the CDC and SCAN code)")
    sub_batch_size: int | None = Field(
        None, ge=1, description="plan each batch once (confidence, selection, batch-wide statistics), then train it "
                                "in contiguous chunks of this many rows, one optimiser step each (CDC's B_s: "
                                "B / B_s updates per batch); unset: one step per batch")
    encode: Literal["local", "ray"] = Field(
        "local", description='where raw-view features of a frozen backbone are computed (head-init\'s features, '
        'cached_views\' raw copy): "local" (this process) or "ray" (Ray Data tasks on the cluster RAY_ADDRESS '
        "names, else a local Ray; needs ray[data]; toolkit/run/ray_encode.py)")
    max_steps: int | None = Field(
        None, ge=1, description="a rehearsal, not a result: every stage's epochs stop after this many training "
        "steps, every stage runs at most 2 epochs, every whole-data pass computes this many chunks (the other rows "
        "repeat them, so shapes and memory are real); no cache is read or written. Times each stage for "
        "benchmarks/rehearsal.py (toolkit/api/step_cap.py); unset: a normal run")
    ema_decay: float = Field(0.0, ge=0, lt=1, description="> 0: evaluate (and save) an exponential moving "
                             "average of backbone and head, updated every step (FixMatch, SPICE's stage 3: 0.999)")
    freeze_backbone: bool = False
    bn_recalibrate: bool = Field(
        False, description="before every evaluation, re-estimate the BatchNorm running statistics of backbone and "
                           "head from a pass over the real training images (raw view): for training forwards that "
                           "are not the data, such as GCC's generated images (toolkit/nn/batch_norm.py)")
    reinit: bool = Field(
        False, description="train backbone and clustering head from fresh random weights (seeded) once the "
                           "selection plugin has read the head-init model's predictions (epoch 1's state): the "
                           "released SPICE code's stage 3, which trains a new network on the reliable labels")
    cached_views: int = Field(
        0, ge=0, description="freeze_backbone = true: > 0 encodes this many augmented copies of every image's weak "
                             "and strong views (and its raw view for evaluation) once, and trains and evaluates the "
                             "head on them, cycling the copies by epoch, instead of a backbone forward per step "
                             "(kept in the feature cache for later runs; toolkit/run/frozen_features.py)")
    grad_clip: float | None = Field(None, gt=0)
    # Speed settings for the whole run (pretraining included); each is a no-op where it would not pay off.
    compile: bool = False  # torch.compile the backbone (first steps are slow while it compiles)
    channels_last: AutoFlag = "auto"  # auto: on for conv backbones on CUDA
    data_on_device: AutoFlag = "auto"  # auto: keep the uint8 images on CUDA when they fit

    @field_validator("reinit")
    @classmethod
    def _reinit_needs_a_trainable_backbone(cls, value: bool, info: ValidationInfo) -> bool:
        if value and info.data.get("freeze_backbone"):
            raise ValueError("cannot be combined with freeze_backbone = true (a frozen random backbone learns nothing)")
        return value

    @field_validator("cached_views")
    @classmethod
    def _cached_views_need_a_frozen_backbone(cls, value: int, info: ValidationInfo) -> int:
        if value and not info.data.get("freeze_backbone"):
            raise ValueError("needs freeze_backbone = true (the features of a backbone that trains change every step)")
        return value


class SlotConfig(BaseModel):
    """`method` names the plugin; every other key is that plugin's option."""

    model_config = ConfigDict(extra="allow")
    method: str

    @field_validator("method")
    @classmethod
    def _non_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must name a plugin")
        return v

    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})



class RecipeConfig(_Strict):
    experiment: ExperimentConfig = Field(default_factory=ExperimentConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    views: ViewsConfig = Field(default_factory=ViewsConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    pretrain: SlotConfig = Field(default_factory=lambda: SlotConfig(method="none"))
    head_init: SlotConfig = Field(default_factory=lambda: SlotConfig(method="random"))
    selection: SlotConfig = Field(default_factory=lambda: SlotConfig(method="all"))
    calibration: SlotConfig = Field(default_factory=lambda: SlotConfig(method="none"))
    generation: SlotConfig = Field(default_factory=lambda: SlotConfig(method="none"))
    tune: TuneConfig | None = None  # validated by parse_tune first, for messages naming [tune.*]


@dataclass
class Recipe:
    """A validated recipe: the core model plus each slot's plugin class and validated options."""

    config: RecipeConfig
    plugin_classes: dict[str, type[Plugin]]
    plugin_options: dict[str, BaseModel]
    source: str
    #: Keys the recipe sets to "auto" that the engine derives from the data (toolkit.recipe.auto.RULES).
    auto: list[str] = field(default_factory=list)
    #: After `resolve`: each derived key's value and the rule that gave it.
    derived: dict[str, tuple[Any, str]] = field(default_factory=dict)
    #: The `--set` overrides applied to the file (for the run's name and its `overrides` tag).
    overrides: list[str] = field(default_factory=list)

    @property
    def experiment(self) -> ExperimentConfig:
        return self.config.experiment

    def build_plugin(self, slot: str) -> Plugin:
        plugin = self.plugin_classes[slot](self.plugin_options[slot])
        plugin.name = getattr(self.config, slot).method
        return plugin

    def resolved(self) -> dict[str, Any]:
        """The complete recipe with every default filled in (what `toolkit run` accepts back)."""
        out = self.config.model_dump(mode="json", exclude_none=True)
        for slot in SLOTS:
            out[slot] = {"method": self.config.__dict__[slot].method,
                         **self.plugin_options[slot].model_dump(mode="json", exclude_none=True)}
        if out.get("tune") is None:
            out.pop("tune", None)
        return auto.restore(out, self.auto) if self.auto else out

    def resolve(self, facts: auto.DataFacts) -> "Recipe":
        """This recipe with every "auto" key replaced by its rule's value for `facts` (itself when none)."""
        if not self.auto:
            return self
        tree = auto.substitute(self.resolved(), self.auto, facts)
        out = validate(tree, self.source)
        out.overrides = list(self.overrides)
        out.derived = {key: (auto.RULES[key].value(facts), auto.RULES[key].why) for key in self.auto}
        return out

    def to_toml(self) -> str:
        return tomli_w.dumps(self.resolved())

    def flat_params(self) -> dict[str, str]:
        """Dotted keys -> values, for MLflow params."""
        return flatten(self.resolved())


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = str(value)
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """'train.lr=0.1' -> (['train', 'lr'], 0.1). Values are TOML literals; anything else is a string."""
    if "=" not in text:
        raise RecipeError(f"--set '{text}' must look like section.key=value")
    path, raw = text.split("=", 1)
    keys = [k.strip() for k in path.split(".")]
    if len(keys) < 2 or not all(keys):
        raise RecipeError(f"--set '{text}': the key must be section.key (for example train.epochs=5)")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return keys, value


def apply_overrides(tree: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply --set overrides. Switching a slot's plugin (`--set selection.method=topk`) drops the options the
    file gave the previous plugin, since they belong to it; options set on the command line stay."""
    tree = copy.deepcopy(tree)
    parsed = [parse_override(text) for text in overrides]
    for keys, value in parsed:
        if len(keys) == 2 and keys[0] in SLOTS and keys[1] == "method":
            section = tree.get(keys[0])
            if isinstance(section, dict) and section.get("method") != value:
                tree[keys[0]] = {}
                _drop_searched_options(tree, keys[0])
    for text, (keys, value) in zip(overrides, parsed):
        node = tree
        for k in keys[:-1]:
            child = node.setdefault(k, {})
            if not isinstance(child, dict):
                raise RecipeError(f"--set '{text}': '{k}' is a value, not a section")
            node = child
        node[keys[-1]] = value
    return tree


def _drop_searched_options(tree: dict[str, Any], slot: str) -> None:
    """[tune.space] entries for a slot's options belonged to the plugin that was switched away."""
    space = tree.get("tune", {}).get("space") if isinstance(tree.get("tune"), dict) else None
    if isinstance(space, dict):
        for key in [k for k in space if k == slot or k.startswith(f"{slot}.")]:
            del space[key]


def read_toml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise RecipeError("file not found" if not p.exists() else "not a file", file=str(path))
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"TOML syntax error: {exc}", file=str(path)) from None
    except UnicodeDecodeError:
        raise RecipeError("not a UTF-8 text file", file=str(path)) from None


def _error_from_validation(exc: ValidationError, file: str, prefix: tuple[str, ...] = (),
                           model: type[BaseModel] | None = None) -> RecipeError:
    err = exc.errors()[0]
    loc = prefix + tuple(str(x) for x in err["loc"])
    section = ".".join(loc[:-1]) if len(loc) > 1 else (loc[0] if loc else None)
    key = loc[-1] if len(loc) > 1 else None
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
        valid = _valid_keys(model, loc[len(prefix):-1]) if model else []
        if valid:
            msg += f"; valid keys: {', '.join(valid)}"
        elif model is not None and prefix and not model.model_fields:
            msg += "; this plugin takes no options"
    elif err["type"] == "missing":
        msg = "required key is missing"
    elif "input" in err and not isinstance(err["input"], (dict, list)):
        msg += f" (got {err['input']!r})"
    if len(loc) == 1 and err["type"] != "extra_forbidden":
        section, key = loc[0], None
    elif len(loc) == 1:
        section, key = None, loc[0]
        msg = "unknown section" + ("; valid sections: " + ", ".join(_valid_keys(model, ())) if model else "")
    return RecipeError(msg, file=file, section=section, key=key)


def _valid_keys(model: type[BaseModel] | None, path: tuple[str, ...]) -> list[str]:
    node: Any = model
    for part in path:
        if node is None or not hasattr(node, "model_fields") or part not in node.model_fields:
            return []
        ann = node.model_fields[part].annotation
        node = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    if node is None or not hasattr(node, "model_fields"):
        return []
    return sorted(node.model_fields)


def validate(tree: dict[str, Any], source: str = "<recipe>", check_tune: bool = False) -> Recipe:
    """Validate a recipe tree: core sections first, then each slot's plugin and options."""
    if isinstance(tree.get("train"), dict) and "eval_every" in tree["train"]:
        # removed in API 2.0 (it was never read); run folders written before still carry it in recipe.toml
        tree = {**tree, "train": {k: v for k, v in tree["train"].items() if k != "eval_every"}}
    if isinstance(tree.get("tune"), dict):
        parse_tune(tree["tune"], source)
    derived_keys = auto.auto_keys(tree)
    if derived_keys:  # validated with the digits value; the engine puts the data's value in (Recipe.resolve)
        tree = auto.substitute(tree, derived_keys, auto.DIGITS)
    try:
        model = RecipeConfig.model_validate(tree)
    except ValidationError as exc:
        raise _error_from_validation(exc, source, model=RecipeConfig) from None
    classes: dict[str, type[Plugin]] = {}
    options: dict[str, BaseModel] = {}
    for slot in SLOTS:
        cfg: SlotConfig = getattr(model, slot)
        try:
            cls = plugin_registry.load(slot, cfg.method)
        except PluginError as exc:
            raise RecipeError(str(exc), file=source, section=slot, key="method") from None
        try:
            opts = cls.Options.model_validate(cfg.options())
        except ValidationError as exc:
            raise _error_from_validation(exc, source, prefix=(slot,), model=cls.Options) from None
        classes[slot], options[slot] = cls, opts
    if check_tune and model.tune is not None:  # searched keys vs this recipe: for `tune` and `recipes validate`;
        check_space_keys(tree, model.tune, source)  # a plain run may switch a plugin the space was written for
    return Recipe(model, classes, options, source, auto=derived_keys)


def load_recipe(path: str | Path, overrides: list[str] | None = None, check_tune: bool = False) -> Recipe:
    """Read, override and validate a recipe file. Raises RecipeError (one line) on any problem."""
    tree = read_toml(path)
    try:
        tree = apply_overrides(tree, overrides or [])
    except RecipeError as exc:
        raise RecipeError(exc.detail, file=str(path)) from None
    recipe = validate(tree, str(path), check_tune)
    recipe.overrides = list(overrides or [])
    return recipe

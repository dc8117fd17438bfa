"""The `[tune]` recipe section: what a hyperparameter search optimises, how, and over which recipe keys.

Validated like every other section so a typo in a search fails at load time with file, section and key,
not minutes later inside a Ray worker. `[tune.space]` maps dotted recipe keys to distributions; each key
is checked by applying its extreme / every choice value to the recipe and validating the result, so a
space can never propose a value the recipe itself would refuse.

This module imports neither Ray nor Optuna: validating a recipe must stay cheap and work without them.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from toolkit.errors import RecipeError
from toolkit.metric_names import MAXIMISE, MINIMISE

#: The label-free default objective: mean confidence times normalised cluster-size entropy (see docs/tuning.md).
LABEL_FREE_METRIC = "balanced_confidence"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Distribution(_Strict):
    """One searched key: uniform / loguniform / int over [low, high], or choice over `values`."""

    type: Literal["uniform", "loguniform", "int", "choice"]
    low: float | None = None
    high: float | None = None
    values: list[Any] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "Distribution":
        if self.type == "choice":
            if not self.values:
                raise ValueError("type 'choice' needs a non-empty values list")
            if self.low is not None or self.high is not None:
                raise ValueError("type 'choice' takes values, not low/high")
            return self
        if self.values is not None:
            raise ValueError(f"type '{self.type}' takes low and high, not values")
        if self.low is None or self.high is None:
            raise ValueError(f"type '{self.type}' needs both low and high")
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.low >= self.high:
            raise ValueError(f"needs finite low < high (got low={self.low}, high={self.high})")
        if self.type == "loguniform" and self.low <= 0:
            raise ValueError(f"type 'loguniform' needs low > 0 (got {self.low})")
        if self.type == "int" and (self.low != int(self.low) or self.high != int(self.high)):
            raise ValueError(f"type 'int' needs whole-number bounds (got {self.low}, {self.high})")
        return self

    def probe_values(self) -> list[Any]:
        """Values that must all be acceptable recipe values: both ends of a range, every choice."""
        if self.type == "choice":
            return list(self.values or [])
        if self.type == "int":
            return [int(self.low), int(self.high)]  # type: ignore[arg-type]
        return [float(self.low), float(self.high)]  # type: ignore[arg-type]

    def upper(self) -> float | None:
        """Largest value the key can take (None for non-numeric choices)."""
        vals = self.probe_values()
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            return float(max(vals))
        return None

    def describe(self) -> str:
        if self.type == "choice":
            return f"choice({', '.join(toml_literal(v) for v in self.values or [])})"
        return f"{self.type}({self.probe_values()[0]}, {self.probe_values()[1]})"


class Resources(_Strict):
    """Per worker of a trial. `workers > 1` makes every trial a data-parallel run (Ray Train, one process per
    worker, each with `cpus` and `gpus`); a GPU fraction lets single-worker trials share one GPU.

    `gpus = N` (a whole N > 1, workers left at 1) is short for `workers = N, gpus = 1`: a trial that asks for
    several GPUs runs data-parallel over them, one process per GPU."""

    cpus: float = Field(1.0, gt=0)
    gpus: float = Field(0.0, ge=0)
    workers: int = Field(1, ge=1, description="data-parallel processes per trial (1: an ordinary run)")

    @model_validator(mode="before")
    @classmethod
    def _gpus_as_workers(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        gpus, workers = data.get("gpus"), data.get("workers", 1)
        many = isinstance(gpus, (int, float)) and not isinstance(gpus, bool) and gpus > 1
        if many and gpus == int(gpus) and workers == 1:
            return {**data, "workers": int(gpus), "gpus": 1.0}
        return data

    @field_validator("gpus")
    @classmethod
    def _single_gpu(cls, value: float) -> float:
        if value > 1:
            raise ValueError("gpus counts per worker once workers is set, and a trial over several GPUs needs a "
                             "whole number of them: write gpus = N alone, or workers = N with gpus = 1")
        return value

    @model_validator(mode="after")
    def _whole_gpus_per_worker(self) -> "Resources":
        if self.workers > 1 and 0 < self.gpus < 1:
            raise ValueError(f"gpus: data-parallel workers need a whole GPU each (got {self.gpus} with "
                             f"workers = {self.workers}); use gpus = 1 or gpus = 0")
        return self


class TuneConfig(_Strict):
    """`[tune]`: metric/mode (None = chosen from the data: acc if labelled, else a label-free score)."""

    metric: str | None = None
    mode: Literal["max", "min"] | None = None
    num_samples: int = Field(8, ge=1)
    search_alg: Literal["optuna", "random"] = "optuna"
    scheduler: Literal["asha", "fifo"] = "asha"
    grace_period: int = Field(1, ge=1, description="ASHA: epochs every trial runs before it can be stopped")
    reduction_factor: float = Field(2.0, gt=1, description="ASHA: keep 1/reduction_factor of trials per rung")
    max_concurrent: int | None = Field(None, ge=1, description="trials at once (default: as resources allow)")
    max_failures: int = Field(0, ge=0, description="retries of a crashed trial (it resumes from its last epoch)")
    seed: int | None = Field(None, ge=0, description="sampler seed (default: experiment.seed)")
    resources: Resources = Field(default_factory=Resources)
    tracking: Literal["auto", "driver", "trial"] = Field(
        "auto", description="who writes trials' MLflow runs: the search's driver process from each trial's journal "
                            "(no MLflow start-up inside trials; needs the trial folder readable by the driver), the "
                            "trial itself, or auto: driver for trials on the driver's machine, trial elsewhere")
    initial: list[dict[str, Any]] = Field(default_factory=list, description="configs tried first (dotted keys)")
    space: dict[str, Distribution]

    @field_validator("space", mode="before")
    @classmethod
    def _flatten_space(cls, value: Any) -> Any:
        """Accept `train.lr = {...}` (TOML nests it as train -> lr) as well as `"train.lr" = {...}`."""
        if not isinstance(value, dict):
            return value
        flat: dict[str, Any] = {}

        def walk(node: dict[str, Any], prefix: str) -> None:
            for key, sub in node.items():
                name = f"{prefix}{key}"
                if isinstance(sub, dict) and "type" not in sub and sub and all(isinstance(v, dict) for v in sub.values()):
                    walk(sub, name + ".")
                else:
                    flat[name] = sub

        walk(value, "")
        return flat

    @field_validator("space")
    @classmethod
    def _non_empty(cls, value: dict[str, Distribution]) -> dict[str, Distribution]:
        if not value:
            raise ValueError("name at least one dotted recipe key to search, e.g. \"train.lr\" = "
                             "{ type = \"loguniform\", low = 1e-4, high = 1e-2 }")
        for key in value:
            parts = key.split(".")
            if len(parts) < 2 or not all(parts):
                raise ValueError(f"'{key}' must be a dotted recipe key such as train.lr")
            if parts[0] == "tune":
                raise ValueError(f"'{key}': the search cannot search its own settings")
        return value

    @model_validator(mode="after")
    def _known_direction(self) -> "TuneConfig":
        if self.metric is not None and self.mode is None and self.metric not in MAXIMISE | MINIMISE \
                and not self.metric.startswith("loss"):
            raise ValueError(f"metric: '{self.metric}' is not a metric we know the direction of; also set "
                             "mode = \"max\" or \"min\"")
        for point in self.initial:
            unknown = sorted(set(point) - set(self.space))
            if unknown:
                raise ValueError(f"initial: {', '.join(unknown)} not in [tune.space]")
        return self

    def direction(self, metric: str) -> str:
        if self.mode is not None:
            return self.mode
        return "min" if metric in MINIMISE or metric.startswith("loss") else "max"


def toml_literal(value: Any) -> str:
    """A value as the TOML literal `--set key=...` parses back to the same value."""
    return tomli_w.dumps({"v": value}).split("=", 1)[1].strip()


def as_overrides(values: dict[str, Any]) -> list[str]:
    """Sampled {dotted key: value} -> `--set` strings, so a trial is exactly `toolkit run --set ...`."""
    return [f"{key}={toml_literal(value)}" for key, value in values.items()]


def parse_tune(raw: dict[str, Any], source: str) -> TuneConfig:
    """Validate the raw `[tune]` table; errors name [tune], [tune.space] or [tune.resources] and the key."""
    try:
        return TuneConfig.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [str(x) for x in err["loc"]]
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            valid = {"": TuneConfig, "resources": Resources}.get(loc[0] if len(loc) > 1 else "", None)
            if len(loc) > 2 and loc[0] == "space":
                valid = Distribution
            msg = "unknown key" + (f"; valid keys: {', '.join(sorted(valid.model_fields))}" if valid else "")
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif "input" in err and not isinstance(err["input"], (dict, list)):
            msg += f" (got {err['input']!r})"
        if loc and loc[0] == "space" and len(loc) >= 2:
            section, key = "tune.space", loc[1]
        elif loc and loc[0] in ("resources",) and len(loc) >= 2:
            section, key = "tune.resources", loc[1]
        elif loc == ["resources"] and msg.split(":")[0] in Resources.model_fields:  # a check across its keys
            section, key = "tune.resources", msg.split(":")[0]
            msg = msg.split(":", 1)[1].strip()
        else:  # errors of the whole table name the key they are about when its name leads the message
            first = msg.split(" ")[0].rstrip(":")
            section, key = "tune", (loc[0] if loc else None)
            if not loc and first in TuneConfig.model_fields:
                key, msg = first, msg[len(first) + 1:].strip()
        raise RecipeError(msg, file=source, section=section, key=key) from None


def check_space_keys(tree: dict[str, Any], cfg: TuneConfig, source: str) -> None:
    """Every searched key must accept every value the space can propose: validate the recipe with each."""
    from toolkit.recipe.loading import apply_overrides, validate  # here: recipe.py calls into this module

    base = {k: v for k, v in tree.items() if k != "tune"}
    for key, dist in cfg.space.items():
        for value in dist.probe_values():
            try:
                validate(apply_overrides(base, as_overrides({key: value})), source)
            except RecipeError as exc:
                where = f"[{exc.section}]" + (f" {exc.key}" if exc.key else "") if exc.section else (exc.key or "")
                raise RecipeError(f"the recipe refuses {key} = {toml_literal(value)} ({where}: {exc.detail})",
                                  file=source, section="tune.space", key=key) from None
    for point in cfg.initial:
        try:
            validate(apply_overrides(base, as_overrides(point)), source)
        except RecipeError as exc:
            raise RecipeError(f"the recipe refuses {', '.join(as_overrides(point))} ({exc.detail})", file=source,
                              section="tune", key="initial") from None


def check_grace_period(cfg: TuneConfig, train_epochs: int, source: str) -> None:
    """ASHA can only stop trials if they run longer than its grace period (checked before anything starts)."""
    dist = cfg.space.get("train.epochs")
    epochs = int(dist.upper()) if dist is not None and dist.upper() is not None else int(train_epochs)
    if cfg.scheduler == "asha" and cfg.grace_period >= epochs:
        raise RecipeError(f"ASHA needs grace_period ({cfg.grace_period}) below train.epochs ({epochs}); lower it or "
                          "use scheduler = \"fifo\"", file=source, section="tune", key="grace_period")

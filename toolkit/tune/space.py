"""[tune.space] and [tune] as Ray Tune objects: search domains, the searcher (Optuna or random), the scheduler."""

from __future__ import annotations

from typing import Any

from toolkit.errors import RecipeError
from toolkit.recipe.tune_section import TuneConfig, toml_literal


def search_space(cfg: TuneConfig) -> tuple[dict[str, Any], list[str]]:
    """[tune.space] -> Ray Tune domains. Choices holding lists/tables travel as TOML literal strings
    (Optuna's categorical distribution only takes scalars); returns the space and those keys."""
    from ray import tune

    space: dict[str, Any] = {}
    literal: list[str] = []
    for key, dist in cfg.space.items():
        if dist.type == "uniform":
            space[key] = tune.uniform(dist.low, dist.high)
        elif dist.type == "loguniform":
            space[key] = tune.loguniform(dist.low, dist.high)
        elif dist.type == "int":
            space[key] = tune.randint(int(dist.low), int(dist.high) + 1)  # type: ignore[arg-type]  # upper exclusive
        else:
            values = list(dist.values or [])
            if any(isinstance(v, (list, dict)) for v in values):
                literal.append(key)
                values = [toml_literal(v) for v in values]
            space[key] = tune.choice(values)
    return space, literal


def initial_points(cfg: TuneConfig, literal: list[str]) -> list[dict[str, Any]]:
    return [{k: toml_literal(v) if k in literal else v for k, v in p.items()} for p in cfg.initial]


def max_epochs(tree: dict[str, Any], cfg: TuneConfig) -> int:
    dist = cfg.space.get("train.epochs")
    upper = dist.upper() if dist is not None else None
    return int(upper) if upper is not None else int(tree["train"]["epochs"])


def scheduler(cfg: TuneConfig, max_epochs: int, source: str) -> Any:
    if cfg.scheduler == "fifo":
        return None
    from ray.tune.schedulers import ASHAScheduler

    if cfg.grace_period >= max_epochs:
        raise RecipeError(f"ASHA needs grace_period ({cfg.grace_period}) below train.epochs ({max_epochs}); "
                          "lower it or use scheduler = \"fifo\"", file=source, section="tune", key="grace_period")
    # max_t above the last epoch: ASHA then never stops a trial merely for reaching the end.
    return ASHAScheduler(time_attr="epoch", max_t=max_epochs + 1, grace_period=cfg.grace_period,
                         reduction_factor=cfg.reduction_factor)


def searcher(cfg: TuneConfig, seed: int, literal: list[str], limit: int | None = None) -> Any:
    """The searcher; random search holds `limit` trials at once itself (Tune ignores max_concurrent_trials
    for it, with a warning), Optuna is limited through TuneConfig."""
    points = initial_points(cfg, literal) or None
    if cfg.search_alg == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        return OptunaSearch(points_to_evaluate=points, seed=seed)
    from ray.tune.search import BasicVariantGenerator

    return BasicVariantGenerator(points_to_evaluate=points, random_state=seed, max_concurrent=limit or 0)

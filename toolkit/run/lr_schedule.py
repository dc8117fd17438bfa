"""The self-labeling stage's learning-rate schedule, step-based and stateless.

The factor applied to each parameter group's base rate is a pure function of the global optimiser step,
so a resumed run continues on the same curve without a scheduler state in its checkpoint. SPICE's third
stage (FixMatch) uses cosine decay, SCAN's self-labeling a constant rate (Adam), CDC a constant Adam rate.
"""

from __future__ import annotations

import math

import torch

SCHEDULES = ("constant", "cosine", "warmup_cosine", "fixmatch_cosine")


def lr_factor(schedule: str, step: int, total_steps: int, warmup_steps: int = 0, min_ratio: float = 0.0) -> float:
    """Multiplier of the base rate at optimiser step `step` (0-based) of `total_steps`.

    cosine: from 1 down to `min_ratio` along half a cosine; warmup_cosine: linear from 1/warmup_steps up to 1
    over `warmup_steps`, then the cosine over the rest; fixmatch_cosine: FixMatch's cos(7 pi step / (16 total)),
    from 1 down to cos(7 pi / 16) = 0.195 (SPICE's stage 3; `min_ratio` and warm-up do not apply).
    """
    if schedule == "constant" or total_steps <= 0:
        return 1.0
    if schedule == "fixmatch_cosine":
        return math.cos(7.0 * math.pi * min(step, total_steps) / (16.0 * total_steps))
    warm = warmup_steps if schedule == "warmup_cosine" else 0
    if step < warm:
        return (step + 1) / warm
    span = max(total_steps - warm, 1)
    done = min(max(step - warm, 0) / span, 1.0)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * done))


def remember_base_rates(optimizer: torch.optim.Optimizer) -> None:
    """Keep each group's configured rate as `base_lr` (saved with the optimiser's state)."""
    for group in optimizer.param_groups:
        group.setdefault("base_lr", group["lr"])


def set_factor(optimizer: torch.optim.Optimizer, factor: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = group.get("base_lr", group["lr"]) * factor

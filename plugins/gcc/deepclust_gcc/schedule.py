"""Noise schedules and samplers for the conditional DDPM, built on diffusers' schedulers.

GCC leaves T and the beta range unstated; the default is Ho et al.'s linear 1e-4..0.02 at T=1000
and, for small T (CPU tests), both ends scaled by 1000/T so that the last step is still pure noise.
The reverse variance is the posterior one (beta tilde, diffusers' "fixed_small"), with x0 clipped.
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from toolkit.api import inner_loop

Sampler = Literal["ddpm", "ddim", "dpm_solver"]


def linear_betas(timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02, scale: bool = True) -> torch.Tensor:
    """Ho et al.'s linear schedule, with both ends scaled by 1000/T when `scale` (float64)."""
    factor = 1000.0 / timesteps if scale else 1.0
    return torch.linspace(beta_start * factor, beta_end * factor, timesteps, dtype=torch.float64)


def cosine_betas(timesteps: int, offset: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal's cosine schedule: abar(t) = cos^2((t/T + s)/(1 + s) * pi/2), betas capped."""
    t = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    abar = torch.cos((t + offset) / (1 + offset) * torch.pi / 2) ** 2
    return (1 - abar[1:] / abar[:-1]).clamp(max=max_beta)


def make_betas(schedule: str, timesteps: int, beta_start: float, beta_end: float, scale: bool) -> torch.Tensor:
    """Betas of the named schedule (`linear` uses beta_start/beta_end, `cosine` ignores them)."""
    if schedule == "cosine":
        return cosine_betas(timesteps)
    return linear_betas(timesteps, beta_start, beta_end, scale)


def alphas_cumprod(betas: torch.Tensor) -> torch.Tensor:
    """abar_t = prod_{s<=t} (1 - beta_s)."""
    return torch.cumprod(1.0 - betas, dim=0)


def posterior_variance(betas: torch.Tensor) -> torch.Tensor:
    """beta tilde_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t with abar_0 = 1 (so beta tilde_1 = 0)."""
    abar = alphas_cumprod(betas)
    prev = torch.cat([torch.ones(1, dtype=betas.dtype), abar[:-1]])
    return (1 - prev) / (1 - abar) * betas


def make_scheduler(kind: Sampler, betas: torch.Tensor, clip: bool = True) -> Any:
    """A diffusers scheduler for `kind` over the given training betas.

    `ddpm` is ancestral sampling (respaced when asked for fewer steps than T), `ddim` is eta=0 DDIM,
    `dpm_solver` is DPM-Solver++ (2nd order multistep). `clip` clips each step's predicted x0 to [-1, 1] in all
    three: DPM-Solver has no `clip_sample`, so it gets diffusers' thresholding with the threshold pinned at 1
    (s = clamp(quantile, 1, 1) = 1, which is plain clipping), instead of silently ignoring the option.
    """
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

    common: dict[str, Any] = {"num_train_timesteps": len(betas), "trained_betas": betas.float().numpy(),
                              "prediction_type": "epsilon"}
    if kind == "ddpm":
        return DDPMScheduler(**common, variance_type="fixed_small", clip_sample=clip, timestep_spacing="trailing")
    if kind == "ddim":
        return DDIMScheduler(**common, clip_sample=clip, set_alpha_to_one=True, timestep_spacing="trailing")
    if kind == "dpm_solver":
        return DPMSolverMultistepScheduler(**common, algorithm_type="dpmsolver++", solver_order=2,
                                           thresholding=clip, sample_max_value=1.0, timestep_spacing="trailing")
    raise ValueError(f"unknown sampler {kind!r}; use ddpm, ddim or dpm_solver")


@torch.no_grad()
def sample(eps_fn: Any, scheduler: Any, labels: torch.Tensor, shape: tuple[int, int, int], steps: int,
           generator: torch.Generator, clamp: bool = True) -> torch.Tensor:
    """Draw one image per label in [-1, 1]: x_T ~ N(0, I), then `steps` scheduler steps.

    `eps_fn(x_t, t, labels)` predicts the noise; `generator` (CPU) seeds the start and the ancestral noise.
    """
    device = labels.device
    scheduler.set_timesteps(steps)
    x = torch.randn((len(labels), *shape), generator=generator).to(device)
    x = x * scheduler.init_noise_sigma
    for t in inner_loop(scheduler.timesteps):  # a rehearsal ([train] max_steps) runs only a few of them
        eps = eps_fn(x, t, labels)
        x = scheduler.step(eps, t, x, generator=generator).prev_sample
    return x.clamp(-1, 1) if clamp else x

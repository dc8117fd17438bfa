"""Options of the `conditional_ddpm` generation plugin; defaults follow the paper, and docs/gcc.md where
it is silent."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # network and diffusion
    preset: Literal["tiny", "budget", "standard"] = Field(
        "standard", description="U-Net size: standard = Ho et al. CIFAR-10 (35.7M), budget (~6.5M), tiny (CPU tests)")
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    timesteps: int = Field(1000, ge=2, description="diffusion steps T")
    beta_schedule: Literal["linear", "cosine"] = Field(
        "linear", description="linear (Ho et al., beta_start..beta_end) or cosine (Nichol & Dhariwal)")
    beta_start: float = Field(1e-4, gt=0.0, lt=1.0)
    beta_end: float = Field(0.02, gt=0.0, lt=1.0)
    scale_betas: bool = Field(True, description="scale both beta ends by 1000/T (keeps x_T pure noise for small T)")
    # generator training (Eq. 6)
    lr: float = Field(2e-4, gt=0.0)
    batch_size: int = Field(128, ge=1)
    grad_clip: float = Field(1.0, ge=0.0, description="0 = off")
    warmup_steps: int = Field(5000, ge=0, description="linear lr warm-up of the first (pre-)training")
    ema_decay: float = Field(0.999, ge=0.0, lt=1.0)
    hflip: bool = Field(True, description="random horizontal flips of real images for the generator")
    pretrain_epochs: int = Field(300, ge=0, description="generator epochs before the first round (stage I-d)")
    finetune_epochs: int = Field(2, ge=0, description="generator epochs on refreshed labels between rounds")
    round_epochs: int = Field(5, ge=1, description="clustering epochs per round, generator frozen")
    # sampling and the pool
    sampler: Literal["ddpm", "ddim", "dpm_solver"] = Field("ddpm", description="ddpm = ancestral (paper)")
    sample_steps: int = Field(0, ge=0, description="sampling steps; 0 = T (the paper's 1000 ancestral steps)")
    sample_batch_size: int = Field(500, ge=1)
    use_ema: bool = Field(True, description="sample from the EMA weights")
    round_ema: Literal["keep", "reset", "warmup"] = Field(
        "keep", description="the EMA at each round's fine-tune: keep it (the paper; with decay 0.999 after a "
        "2-epoch fine-tune it still holds much of the previous round's weights), reset it to the online weights, "
        "or restart its decay's warm-up min(decay, (1 + k) / (10 + k)) so it follows the fine-tune")
    fresh_per_step: bool = Field(
        False, description="sample the generated batch of every clustering step afresh from the current generator "
        "(the paper's on-the-fly generation; costs a sampling run per step) instead of drawing from the round's pool")
    clip_denoised: bool = Field(
        True, description="clip the predicted x0 to [-1, 1] at each step (every sampler, DPM-Solver included)")
    pool_size: int = Field(0, ge=0, description="generated images per round; 0 = as many as training images")
    pool_min_per_class: int = Field(64, ge=1, description="at least this many per non-empty cluster")
    pool_refresh_epochs: int = Field(0, ge=0, description="also redraw the pool every N clustering epochs "
                                     "within a round, with the current labels (0 = once per round)")
    generated_hflip: bool = Field(True, description="random horizontal flips of generated images")
    generated_bn: Literal["update", "frozen"] = Field(
        "update", description="BatchNorm running statistics in the forward of generated images: update them (the "
        "paper's procedure as written: about half of what evaluation normalises with then comes from generated "
        "images) or leave them to the real images (frozen; the batch still normalises itself). [train] "
        "bn_recalibrate = true instead re-estimates them on real images before every evaluation")
    # Stage II losses (Eq. 12)
    lambda_d: float = Field(1.0, ge=0.0, description="weight of L_d (per-cluster MMD, real vs generated)")
    lambda_cwm: float = Field(1.0, ge=0.0, description="weight of L_cwm (between minus within cosine)")
    lambda_ml: float = Field(1.0, ge=0.0, description="weight of L_ml (reliable metric-learning hinge)")
    mmd_kernel_num: int = Field(5, ge=1)
    mmd_kernel_mul: float = Field(2.0, gt=1.0)
    mmd_kernel_reduce: Literal["sum", "mean"] = "sum"
    mmd_l2norm: bool = False
    cwm_exclude_diag: bool = False
    ml_on: Literal["logits", "probs"] = "logits"
    ml_reduction: Literal["mean", "sum"] = "mean"
    # what is logged
    grid_per_cluster: int = Field(8, ge=0, description="generated images per cluster in the round's grid (0 = none)")

    @model_validator(mode="after")
    def _betas(self) -> "Options":
        scale = 1000.0 / self.timesteps if self.scale_betas else 1.0
        if not self.beta_start < self.beta_end:
            raise ValueError("beta_start must be below beta_end")
        if self.beta_end * scale >= 1.0:
            raise ValueError(f"beta_end scaled by 1000/T is {self.beta_end * scale:.3g} >= 1; "
                             "raise timesteps or set scale_betas = false")
        if self.sample_steps > self.timesteps:
            raise ValueError("sample_steps cannot exceed timesteps")
        return self

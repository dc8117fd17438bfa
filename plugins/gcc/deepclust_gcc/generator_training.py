"""Training the conditional DDPM on real images and their current cluster labels (Eq. 6).

Every epoch's randomness is seeded from (round, epoch), and the whole generator state is saved as a
resume point (`ctx.epoch_loop`), so a killed run continues inside generator training and ends as if
never stopped.
"""

from __future__ import annotations

from typing import Any

import torch

from deepclust_gcc.ddpm import ConditionalDDPM, to_unit_range
from toolkit.api import Checkpointed, RunContext, TrainingError, autocast

GENERATOR_SALT = 51


class GeneratorTrainer:
    """The DDPM, its optimizer and step counter (for the warm-up), trained epoch by epoch."""

    def __init__(self, ddpm: ConditionalDDPM, lr: float, grad_clip: float, warmup_steps: int) -> None:
        self.ddpm = ddpm
        self.optimizer = torch.optim.Adam(ddpm.unet.parameters(), lr=lr)
        self.lr, self.grad_clip, self.warmup_steps = lr, grad_clip, warmup_steps
        self.steps = 0
        #: The step a round's EMA warm-up started at (round_ema = "warmup"), None when the plain EMA runs.
        self.ema_from: int | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"ddpm": self.ddpm.state_dict(), "optimizer": self.optimizer.state_dict(), "steps": self.steps,
                "ema_from": self.ema_from}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ddpm.load_state_dict(state["ddpm"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.steps = int(state["steps"])
        self.ema_from = state.get("ema_from")

    def start_round(self, round_ema: str) -> None:
        """Before a round's fine-tune: keep the EMA (paper), restart it from the online weights, or restart the
        EMA decay's warm-up, min(decay, (1 + k) / (10 + k)) after k steps, so it follows the fine-tune."""
        if round_ema == "reset":
            self.ddpm.reset_ema()
        elif round_ema == "warmup":
            self.ema_from = self.steps

    def train(self, ctx: RunContext, labels: torch.Tensor, epochs: int, stage: str, round_index: int,
              batch_size: int, hflip: bool, warmup: bool) -> float:
        """`epochs` passes over the real images conditioned on `labels`; returns the last mean loss."""
        loop = ctx.epoch_loop(stage, epochs, Checkpointed(generator=self), salt=(GENERATOR_SALT, round_index),
                              plugin="gcc", seed_global=True)  # the global RNG: the U-Net's dropout
        self.ddpm.unet.train()
        for epoch in loop:
            gen = epoch.generator
            total = torch.zeros((), device=ctx.device)
            steps = 0
            for index in ctx.batches(gen, batch_size):
                x0 = to_unit_range(ctx.images(index))
                if hflip:
                    flip = (torch.rand(len(index), generator=gen) < 0.5).to(ctx.device)
                    x0 = torch.where(flip.view(-1, 1, 1, 1), x0.flip(3), x0)
                y = labels[index.to(labels.device)].to(ctx.device)
                with autocast(ctx.device):
                    loss = self.ddpm.loss(x0, y, gen)
                if not torch.isfinite(loss):  # stop at once: later steps would only spread the NaN
                    raise TrainingError(f"stage {stage}, epoch {epoch.number}: non-finite loss in generator "
                                        "loss_ddpm (try a lower generation.lr or grad_clip)")
                self._step(loss, warmup)
                total += loss.detach()
                steps += 1
            epoch.report(loss_ddpm=float(total) / max(steps, 1))  # one host read per epoch
        return loop.metrics.get("loss_ddpm", float("nan"))

    def _step(self, loss: torch.Tensor, warmup: bool) -> None:
        if warmup and self.warmup_steps:
            scale = min(1.0, (self.steps + 1) / self.warmup_steps)
            for group in self.optimizer.param_groups:
                group["lr"] = self.lr * scale
        else:
            for group in self.optimizer.param_groups:
                group["lr"] = self.lr
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.ddpm.unet.parameters(), self.grad_clip)
        self.optimizer.step()
        if self.ema_from is None:
            self.ddpm.update_ema()
        else:
            k = self.steps - self.ema_from
            self.ddpm.update_ema(min(self.ddpm.ema_decay, (1.0 + k) / (10.0 + k)))
        self.steps += 1

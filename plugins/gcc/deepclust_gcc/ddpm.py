"""The conditional DDPM: a U-Net, its EMA copy, the training loss (Eq. 6) and label-conditioned sampling."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from deepclust_gcc.schedule import Sampler, alphas_cumprod, make_scheduler, sample
from deepclust_gcc.unet import Preset, build_unet, size_factor


def to_unit_range(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1], the DDPM's pixel range."""
    return images_uint8.float().div(127.5).sub(1.0)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8, so generated images go through the same views as real ones."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


class ConditionalDDPM(nn.Module):
    """epsilon-prediction DDPM over images in [-1, 1], conditioned on a cluster id."""

    def __init__(self, preset: Preset, image_size: int, channels: int, num_classes: int, betas: torch.Tensor,
                 dropout: float = 0.1, ema_decay: float = 0.999) -> None:
        super().__init__()
        factor = size_factor(preset)
        # A side the U-Net cannot halve often enough (25x25 faces) is padded (edge pixels repeated) up to the
        # next multiple for the diffusion, and generated images are cropped back.
        self.canvas = -(-image_size // factor) * factor
        self.unet = build_unet(preset, self.canvas, channels, num_classes, dropout)
        self.ema_decay = ema_decay
        self.ema = AveragedModel(self.unet, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=True)
        self.ema.requires_grad_(False)
        self.register_buffer("betas", betas.float())
        self.register_buffer("abar", alphas_cumprod(betas).float())
        self.shape = (channels, image_size, image_size)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        extra = self.canvas - x.shape[-1]
        return x if extra == 0 else F.pad(x, (0, extra, 0, extra), mode="replicate")

    @property
    def timesteps(self) -> int:
        return int(self.betas.shape[0])

    def loss(self, x0: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """L_simple: MSE between the true noise and the predicted one at a uniform random step."""
        x0 = self._pad(x0)
        t = torch.randint(0, self.timesteps, (len(x0),), generator=generator).to(x0.device)
        noise = torch.randn(x0.shape, generator=generator).to(x0.device)
        pred = self.unet(self.q_sample(x0, t, noise), t, class_labels=labels).sample
        return F.mse_loss(pred.float(), noise)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The forward (noising) process: x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise, per row's step t."""
        a = self.abar[t].view(-1, *([1] * (x0.dim() - 1)))
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def update_ema(self, decay: float | None = None) -> None:
        """One EMA step towards the online U-Net: with its own decay, or with `decay` (a warm-up's smaller one)."""
        if decay is None:
            self.ema.update_parameters(self.unet)
            return
        with torch.no_grad():
            for avg, online in zip([*self.ema.module.parameters(), *self.ema.module.buffers()],
                                   [*self.unet.parameters(), *self.unet.buffers()]):
                if avg.dtype.is_floating_point:
                    avg.lerp_(online.detach(), 1.0 - decay)
                else:
                    avg.copy_(online)
            self.ema.n_averaged += 1

    def reset_ema(self) -> None:
        """The EMA restarts from the online U-Net's current weights."""
        with torch.no_grad():
            for avg, online in zip([*self.ema.module.parameters(), *self.ema.module.buffers()],
                                   [*self.unet.parameters(), *self.unet.buffers()]):
                avg.copy_(online)

    @torch.no_grad()
    def generate(self, labels: torch.Tensor, sampler: Sampler, steps: int, generator: torch.Generator,
                 use_ema: bool = True, batch_size: int = 512, clip: bool = True) -> torch.Tensor:
        """Images in [-1, 1] for `labels`, in chunks of `batch_size`, with the chosen sampler."""
        net: Any = self.ema.module if use_ema else self.unet
        was_training = net.training
        net.eval()
        scheduler = make_scheduler(sampler, self.betas.double().cpu(), clip)

        def eps(x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            step = torch.full((len(x),), int(t), device=x.device, dtype=torch.long)
            return net(x, step, class_labels=y).sample.float()

        canvas = (self.shape[0], self.canvas, self.canvas)
        side = self.shape[-1]
        out = [sample(eps, scheduler, chunk, canvas, steps, generator)[..., :side, :side]
               for chunk in labels.split(batch_size)]
        net.train(was_training)
        return torch.cat(out) if out else torch.empty((0, *self.shape), device=labels.device)

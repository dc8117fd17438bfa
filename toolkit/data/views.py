"""Batched random views of uint8 image batches, on the batch's own device.

torchvision's v2 transforms draw one parameter set per call, so per-sample augmentation of small
images needs one call per image, which is far too slow for contrastive training. Here every sample
gets its own parameters within one batched call: all geometric ops become one affine matrix per
sample and a single `grid_sample`; colour ops use per-sample factors. Parameters are drawn with the
given `torch.Generator` (on its device, CPU by default) and moved to the batch's device, so a seeded
generator reproduces the same views.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator

from toolkit.data.randaugment import gray, rand_augment, split_draws


class AugmentConfig(BaseModel):
    """One view's augmentations; every default is "off", so `AugmentConfig()` only normalises."""

    model_config = ConfigDict(extra="forbid")

    crop_scale: tuple[float, float] = (1.0, 1.0)  # random resized crop: area fraction range
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)  # ... and aspect ratio range
    hflip: float = Field(default=0.0, ge=0.0, le=1.0)
    degrees: float = Field(default=0.0, ge=0.0, le=180.0)
    translate: float = Field(default=0.0, ge=0.0, le=1.0)  # max shift as a fraction of width/height
    shear: float = Field(default=0.0, ge=0.0, lt=90.0)  # max x-shear in degrees
    scale: tuple[float, float] = (1.0, 1.0)
    brightness: float = Field(default=0.0, ge=0.0)
    contrast: float = Field(default=0.0, ge=0.0)
    saturation: float = Field(default=0.0, ge=0.0)
    hue: float = Field(default=0.0, ge=0.0, le=0.5)
    jitter_p: float = Field(default=0.8, ge=0.0, le=1.0)
    grayscale: float = Field(default=0.0, ge=0.0, le=1.0)
    blur: float = Field(default=0.0, ge=0.0, le=1.0)
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    noise: float = Field(default=0.0, ge=0.0)  # std of gaussian noise added after normalisation
    cutout: float = Field(default=0.0, ge=0.0, le=1.0)  # side of the zeroed square, fraction of min(H, W)
    #: SCAN's and the CDC/SPICE code's Cutout: per image a side drawn uniformly from 1..round(cutout * min(H, W))
    #: pixels, centred on a uniformly random pixel and clipped at the borders (false: that largest side on
    #: every image, fully inside it).
    cutout_random: bool = False
    #: RandAugment (SCAN's `Augment(n)`, CDC's and SPICE's strong view): n ops per image, drawn uniformly with
    #: replacement from 14, each at a uniform random magnitude (toolkit/data/randaugment.py); 0 = off.
    randaugment: int = Field(default=0, ge=0, le=16)
    randaugment_shear: float = Field(default=0.1, ge=0.0, le=1.0)  # max shear factor (FixMatch: 0.3)
    randaugment_translate: float = Field(default=0.1, ge=0.0, le=1.0)  # max shift, fraction of the side (FixMatch: 0.3)

    @model_validator(mode="after")
    def _ranges(self) -> "AugmentConfig":
        checks = {
            "crop_scale": (self.crop_scale, 0.0, 1.0),
            "crop_ratio": (self.crop_ratio, 0.0, math.inf),
            "scale": (self.scale, 0.0, math.inf),
            "blur_sigma": (self.blur_sigma, 0.0, math.inf),
        }
        for name, ((lo, hi), low, high) in checks.items():
            if not (low < lo <= hi <= high):
                raise ValueError(f"{name} must be (lo, hi) with {low} < lo <= hi <= {high}, got ({lo}, {hi})")
        return self

    @property
    def geometric(self) -> bool:
        """Whether any geometric op (rotate, translate, shear, crop, scale) is on, so the affine step can be skipped."""
        moves = self.degrees > 0 or self.translate > 0 or self.shear > 0
        return moves or self.crop_scale != (1.0, 1.0) or self.scale != (1.0, 1.0)

    @property
    def jitter(self) -> bool:
        """Whether colour jitter can change a pixel, so the jitter step can be skipped."""
        return self.jitter_p > 0 and (self.brightness > 0 or self.contrast > 0 or self.saturation > 0 or self.hue > 0)


def channel_stats(images_uint8: torch.Tensor, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Per-channel mean and std in [0, 1] units over all pixels (float64 sums, chunked)."""
    c = images_uint8.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    for start in range(0, len(images_uint8), chunk):
        x = images_uint8[start : start + chunk].to(torch.float64) / 255.0
        total += x.sum(dim=(0, 2, 3)).cpu()
        total_sq += (x * x).sum(dim=(0, 2, 3)).cpu()
    count = images_uint8.numel() / c
    mean = total / count
    std = (total_sq / count - mean * mean).clamp_min(0).sqrt()
    return mean.tolist(), std.tolist()


class BatchView:
    """Callable producing one normalised random view per image; `cfg=None` gives the raw (normalised) view."""

    def __init__(self, cfg: AugmentConfig | None, mean: Sequence[float], std: Sequence[float]) -> None:
        self.cfg = cfg
        self.mean = torch.tensor(list(mean), dtype=torch.float32)
        self.std = torch.tensor(list(std), dtype=torch.float32)
        if self.mean.shape != self.std.shape or self.mean.ndim != 1:
            raise ValueError("mean and std must be sequences of the same length")
        if (self.std <= 0).any():
            raise ValueError("std must be positive")

    def __call__(self, images_uint8: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if images_uint8.ndim != 4:
            raise ValueError(f"expected images [B, C, H, W], got shape {tuple(images_uint8.shape)}")
        c = images_uint8.shape[1]
        if len(self.mean) not in (1, c):
            raise ValueError(f"{len(self.mean)} normalisation values for {c}-channel images")
        if images_uint8.dtype == torch.uint8:
            x = images_uint8.float().div_(255.0)
        else:  # already float in [0, 1]
            x = images_uint8.float()
        cfg = self.cfg
        rng = _Draw(generator, x.device)
        if cfg is not None and len(x):
            x = _geometric(x, cfg, rng)
            x = _colour(x, cfg, rng)
            if cfg.randaugment:
                ops, draws = split_draws(rng.uniform((len(x), 2 * cfg.randaugment)), cfg.randaugment)
                x = rand_augment(x, cfg.randaugment, ops, draws, cfg.randaugment_shear, cfg.randaugment_translate)
        mean = self.mean.to(x.device).view(1, -1, 1, 1)
        std = self.std.to(x.device).view(1, -1, 1, 1)
        x = (x - mean) / std
        if cfg is not None and len(x):
            if cfg.noise > 0:
                x = x + cfg.noise * rng.normal(tuple(x.shape))
            if cfg.cutout > 0:
                x = _random_cutout(x, cfg.cutout, rng) if cfg.cutout_random else _cutout(x, cfg.cutout, rng)
        return x.contiguous()


class _Draw:
    """Random numbers from one generator on its own device, delivered on the batch's device."""

    def __init__(self, generator: torch.Generator | None, device: torch.device) -> None:
        self.generator = generator
        self.source = generator.device if generator is not None else torch.device("cpu")
        self.device = device

    def uniform(self, shape: tuple[int, ...], lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
        u = torch.rand(shape, generator=self.generator, device=self.source)
        return (lo + (hi - lo) * u).to(self.device)

    def normal(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.randn(shape, generator=self.generator, device=self.source).to(self.device)

    def bernoulli(self, n: int, p: float) -> torch.Tensor:
        return self.uniform((n,)) < p


# ---- geometry: crop, affine and flip as one sampling grid -------------------------------------


def _crop_boxes(n: int, h: int, w: int, cfg: AugmentConfig, rng: _Draw, tries: int = 10) -> tuple[torch.Tensor, ...]:
    """Random resized crop boxes (centre offset and size, pixels); first fitting try, else the whole image."""
    area = rng.uniform((n, tries), *cfg.crop_scale) * (h * w)
    log_ratio = rng.uniform((n, tries), math.log(cfg.crop_ratio[0]), math.log(cfg.crop_ratio[1]))
    ratio = log_ratio.exp()
    cw, ch = (area * ratio).sqrt(), (area / ratio).sqrt()
    fits = (cw <= w) & (ch <= h)
    first = fits.float().argmax(dim=1, keepdim=True)
    any_fit = fits.any(dim=1)
    cw = torch.where(any_fit, cw.gather(1, first).squeeze(1), torch.full_like(any_fit, w, dtype=cw.dtype))
    ch = torch.where(any_fit, ch.gather(1, first).squeeze(1), torch.full_like(any_fit, h, dtype=ch.dtype))
    pos = rng.uniform((n, 2))
    cx = pos[:, 0] * (w - cw) + cw / 2 - w / 2
    cy = pos[:, 1] * (h - ch) + ch / 2 - h / 2
    return cx, cy, cw, ch


def _geometric(x: torch.Tensor, cfg: AugmentConfig, rng: _Draw) -> torch.Tensor:
    """Crop -> affine -> flip, sampled in one grid_sample (bilinear, zeros outside the image)."""
    n, _, h, w = x.shape
    flip = rng.bernoulli(n, cfg.hflip) if cfg.hflip > 0 else None
    if not cfg.geometric:
        return x if flip is None else torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)

    one = torch.ones(n, device=x.device)
    zero = torch.zeros(n, device=x.device)
    if cfg.crop_scale != (1.0, 1.0):
        cx, cy, cw, ch = _crop_boxes(n, h, w, cfg, rng)
    else:
        cx, cy, cw, ch = zero, zero, one * w, one * h
    angle = rng.uniform((n,), -cfg.degrees, cfg.degrees) * (math.pi / 180) if cfg.degrees > 0 else zero
    shear = rng.uniform((n,), -cfg.shear, cfg.shear) * (math.pi / 180) if cfg.shear > 0 else zero
    scale = rng.uniform((n,), *cfg.scale) if cfg.scale != (1.0, 1.0) else one
    if cfg.translate > 0:
        t = rng.uniform((n, 2), -cfg.translate, cfg.translate)
        tx, ty = t[:, 0] * w, t[:, 1] * h
    else:
        tx, ty = zero, zero

    # Forward affine A = R(angle) @ Shear_x @ scale (pixel units, origin at the image centre).
    cos, sin, tan = angle.cos(), angle.sin(), -shear.tan()  # sign as torchvision: +shear tilts rightwards
    a = torch.stack([torch.stack([cos, cos * tan - sin], -1), torch.stack([sin, sin * tan + cos], -1)], -2)
    a = a * scale.view(-1, 1, 1)
    a_inv = torch.linalg.inv(a)
    fx = torch.where(flip, -one, one) if flip is not None else one
    flip_m = torch.diag_embed(torch.stack([fx, one], -1))
    crop_m = torch.diag_embed(torch.stack([cw / w, ch / h], -1))
    # output p -> input: crop_m @ a_inv @ (flip_m @ p - t) + c
    lin = crop_m @ a_inv @ flip_m
    shift = torch.stack([cx, cy], -1).unsqueeze(-1) - crop_m @ a_inv @ torch.stack([tx, ty], -1).unsqueeze(-1)
    # Normalised coordinates: p = N q with N = diag(w/2, h/2) for input and output alike.
    norm = torch.tensor([w / 2, h / 2], device=x.device)
    lin = lin * norm.view(1, 1, 2) / norm.view(1, 2, 1)
    shift = shift / norm.view(1, 2, 1)
    theta = torch.cat([lin, shift], dim=-1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


# ---- colour ------------------------------------------------------------------------------------


def _brightness(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return (x * f.view(-1, 1, 1, 1)).clamp(0, 1)


def _contrast(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    m = gray(x).mean(dim=(1, 2, 3), keepdim=True)
    return ((x - m) * f.view(-1, 1, 1, 1) + m).clamp(0, 1)


def _saturation(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    g = gray(x)
    return ((x - g) * f.view(-1, 1, 1, 1) + g).clamp(0, 1)


def _hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate hue by `shift` turns (RGB -> HSV -> RGB, per sample)."""
    r, g, b = x.unbind(1)
    v, _ = x.max(dim=1)
    delta = v - x.min(dim=1).values
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    h = torch.where(v == r, ((g - b) / safe) % 6, torch.where(v == g, (b - r) / safe + 2, (r - g) / safe + 4))
    h = torch.where(delta > 0, h / 6, torch.zeros_like(h))
    s = torch.where(v > 0, delta / torch.where(v > 0, v, torch.ones_like(v)), torch.zeros_like(v))
    h = (h + shift.view(-1, 1, 1)) % 1.0
    out = []
    for k0 in (5.0, 3.0, 1.0):  # R, G, B
        k = (k0 + h * 6) % 6
        out.append(v - v * s * torch.minimum(k, 4 - k).clamp(0, 1))
    return torch.stack(out, dim=1).clamp(0, 1)


def _colour(x: torch.Tensor, cfg: AugmentConfig, rng: _Draw) -> torch.Tensor:
    """Colour jitter (per-sample factors and per-sample random op order), grayscale, then blur."""
    n, c = x.shape[:2]
    if cfg.jitter:
        ops = []
        if cfg.brightness > 0:
            ops.append((_brightness, rng.uniform((n,), max(0.0, 1 - cfg.brightness), 1 + cfg.brightness)))
        if cfg.contrast > 0:
            ops.append((_contrast, rng.uniform((n,), max(0.0, 1 - cfg.contrast), 1 + cfg.contrast)))
        if cfg.saturation > 0 and c == 3:
            ops.append((_saturation, rng.uniform((n,), max(0.0, 1 - cfg.saturation), 1 + cfg.saturation)))
        if cfg.hue > 0 and c == 3:
            ops.append((_hue, rng.uniform((n,), -cfg.hue, cfg.hue)))
        apply = rng.bernoulli(n, cfg.jitter_p)
        order = rng.uniform((n, 4)).argsort(dim=1)  # per-sample op order, as ColorJitter permutes
        x = x.clone()
        for step in range(4):
            for j, (op, factor) in enumerate(ops):
                idx = (apply & (order[:, step] == j)).nonzero().squeeze(1)
                if idx.numel():
                    x[idx] = op(x[idx], factor[idx])
    if cfg.grayscale > 0 and c == 3:
        to_gray = rng.bernoulli(n, cfg.grayscale)
        x = torch.where(to_gray.view(-1, 1, 1, 1), gray(x).expand_as(x), x)
    if cfg.blur > 0:
        x = _blur(x, cfg, rng)
    return x


def _blur(x: torch.Tensor, cfg: AugmentConfig, rng: _Draw) -> torch.Tensor:
    """Gaussian blur with per-sample sigma on a random subset; kernel about 10% of the image side."""
    n, c, h, w = x.shape
    chosen = rng.bernoulli(n, cfg.blur)
    sigma = rng.uniform((n,), *cfg.blur_sigma)
    idx = chosen.nonzero().squeeze(1)
    size = max(3, int(0.1 * min(h, w)) | 1)
    pad = size // 2
    if not idx.numel() or pad >= min(h, w):
        return x
    offsets = torch.arange(size, device=x.device, dtype=x.dtype) - pad
    kernel = torch.exp(-(offsets.view(1, -1) ** 2) / (2 * sigma[idx].view(-1, 1) ** 2))
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # [m*c, size]
    sub = x[idx].reshape(1, -1, h, w)
    groups = sub.shape[1]
    sub = F.conv2d(F.pad(sub, (pad, pad, 0, 0), mode="reflect"), kernel.view(groups, 1, 1, size), groups=groups)
    sub = F.conv2d(F.pad(sub, (0, 0, pad, pad), mode="reflect"), kernel.view(groups, 1, size, 1), groups=groups)
    x = x.clone()
    x[idx] = sub.view(-1, c, h, w)
    return x


def _cutout(x: torch.Tensor, fraction: float, rng: _Draw) -> torch.Tensor:
    """Zero one random square per sample (side = fraction of the shorter side), fully inside the image."""
    n, _, h, w = x.shape
    side = max(1, round(fraction * min(h, w)))
    pos = rng.uniform((n, 2))
    y0 = (pos[:, 0] * (h - side + 1)).floor().clamp(max=h - side).view(-1, 1, 1, 1)
    x0 = (pos[:, 1] * (w - side + 1)).floor().clamp(max=w - side).view(-1, 1, 1, 1)
    rows = torch.arange(h, device=x.device).view(1, 1, -1, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, 1, -1)
    inside = (rows >= y0) & (rows < y0 + side) & (cols >= x0) & (cols < x0 + side)
    return x.masked_fill(inside, 0.0)


def _random_cutout(x: torch.Tensor, fraction: float, rng: _Draw) -> torch.Tensor:
    """Zero one square per sample, SCAN's way: side uniform in 1..round(fraction * min(H, W)), centred on a
    uniformly random pixel, clipped at the borders (so holes near an edge are smaller)."""
    n, _, h, w = x.shape
    largest = max(1, round(fraction * min(h, w)))
    draw = rng.uniform((n, 3))
    side = (draw[:, 0] * largest).floor().clamp(max=largest - 1) + 1
    cy = (draw[:, 1] * h).floor().clamp(max=h - 1)
    cx = (draw[:, 2] * w).floor().clamp(max=w - 1)
    y0, x0 = (cy - (side / 2).floor()).view(-1, 1, 1, 1), (cx - (side / 2).floor()).view(-1, 1, 1, 1)
    side = side.view(-1, 1, 1, 1)
    rows = torch.arange(h, device=x.device).view(1, 1, -1, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, 1, -1)
    inside = (rows >= y0) & (rows < y0 + side) & (cols >= x0) & (cols < x0 + side)
    return x.masked_fill(inside, 0.0)

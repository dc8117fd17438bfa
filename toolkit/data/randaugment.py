"""RandAugment as SCAN, SPICE and FixMatch use it, batched: every image draws its own N ops and magnitudes.

The op set and ranges are those of SCAN's `Augment(n)` (used by CDC's and SPICE's strong views; FixMatch's
RandAugment differs only in wider shear/translate ranges, `randaugment_shear`/`randaugment_translate` = 0.3):
Identity, AutoContrast, Equalize, Rotate [-30, 30] degrees, Solarize (threshold 0..256), Color, Contrast,
Brightness and Sharpness (factor 0.05..0.95), ShearX/Y, TranslateX/Y and Posterize (4..8 bits), N ops drawn
uniformly with replacement, each at a magnitude drawn uniformly from its range. Those papers apply the ops
with PIL on one uint8 image at a time; here one call handles the whole batch on its device, in float [0, 1]:
the ops that PIL defines on uint8 levels (equalize, posterize, solarize's threshold) quantise to 255 levels
first, the others keep float precision (tests check each op against torchvision's functional op). Geometric
ops resample with nearest neighbour and fill with black, as PIL's defaults in those papers' code.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

#: The ops, in a fixed order (a drawn index selects one).
OPS = ("identity", "autocontrast", "equalize", "rotate", "solarize", "color", "contrast", "brightness",
       "sharpness", "shear_x", "shear_y", "translate_x", "translate_y", "posterize")
ROTATE_DEGREES = 30.0
FACTOR_RANGE = (0.05, 0.95)
POSTERIZE_BITS = (4, 8)
_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, as PIL's convert("L")


def gray(x: torch.Tensor) -> torch.Tensor:
    """Luma of RGB images, the channel mean of others ([N, 1, H, W]); the colour views use it too."""
    if x.shape[1] != 3:
        return x.mean(dim=1, keepdim=True)
    r, g, b = x.unbind(1)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(1)


def _levels(x: torch.Tensor) -> torch.Tensor:
    """uint8 levels 0..255 of float [0, 1] pixels (as float)."""
    return (x * 255).round().clamp(0, 255)


def _blend(x: torch.Tensor, degenerate: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL's ImageEnhance: degenerate + factor * (x - degenerate), clipped."""
    f = factor.view(-1, 1, 1, 1)
    return (degenerate + f * (x - degenerate)).clamp(0, 1)


def autocontrast(x: torch.Tensor) -> torch.Tensor:
    """Stretch each channel of each image to [0, 1] (channels with one value stay)."""
    lo = x.amin(dim=(2, 3), keepdim=True)
    hi = x.amax(dim=(2, 3), keepdim=True)
    span = hi - lo
    ok = span > 0
    return torch.where(ok, (x - lo) / torch.where(ok, span, torch.ones_like(span)), x).clamp(0, 1)


def equalize(x: torch.Tensor) -> torch.Tensor:
    """Histogram equalisation per channel of each image, on uint8 levels, with PIL's lookup table."""
    n, c, h, w = x.shape
    levels = _levels(x).long().view(n * c, h * w)
    hist = torch.zeros(n * c, 256, device=x.device, dtype=torch.long)
    hist.scatter_add_(1, levels, torch.ones_like(levels))
    # PIL: step = (pixels - count of the highest occupied level) // 255; identity where step == 0
    top = 255 - hist.flip(1).ne(0).long().argmax(dim=1)
    step = (h * w - hist.gather(1, top.view(-1, 1)).squeeze(1)) // 255
    safe = step.clamp_min(1).view(-1, 1)
    lut = (hist.cumsum(1) + safe // 2) // safe
    lut = torch.cat([torch.zeros_like(lut[:, :1]), lut[:, :-1]], dim=1).clamp(0, 255)
    out = lut.gather(1, levels)
    out = torch.where(step.view(-1, 1) > 0, out, levels)
    return out.view(n, c, h, w).to(x.dtype) / 255


def solarize(x: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """Invert the pixels whose uint8 level is at least `threshold` (0..256) per image."""
    return torch.where(_levels(x) >= threshold.view(-1, 1, 1, 1), 1 - x, x)


def posterize(x: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """Keep the top `bits` (integer 1..8) bits of each uint8 level, per image."""
    step = (2.0 ** (8 - bits)).view(-1, 1, 1, 1)
    return (_levels(x) / step).floor() * step / 255


def color(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _blend(x, gray(x).expand_as(x), factor) if x.shape[1] == 3 else x


def contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _blend(x, gray(x).mean(dim=(1, 2, 3), keepdim=True).expand_as(x), factor)


def brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _blend(x, torch.zeros_like(x), factor)


def sharpness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with PIL's SMOOTH-filtered image (3x3, centre weight 5, /13; border pixels kept)."""
    n, c, h, w = x.shape
    if h < 3 or w < 3:
        return x
    kernel = torch.ones(3, 3, device=x.device, dtype=x.dtype)
    kernel[1, 1] = 5
    kernel = (kernel / 13).expand(c, 1, 3, 3)
    smooth = F.conv2d(x, kernel, groups=c)
    degenerate = x.clone()
    degenerate[:, :, 1:-1, 1:-1] = smooth
    return _blend(x, degenerate, factor)


def affine(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Resample each image at `matrix` @ (u, v, 1) (output pixel -> input pixel, pixel units with the origin
    at the top-left pixel's corner, as PIL's AFFINE transform), nearest neighbour, black outside."""
    n, _, h, w = x.shape
    # pixel centres of the output in PIL coordinates, mapped to input pixel coordinates
    ys, xs = torch.meshgrid(torch.arange(h, device=x.device, dtype=x.dtype) + 0.5,
                            torch.arange(w, device=x.device, dtype=x.dtype) + 0.5, indexing="ij")
    points = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1).view(1, h * w, 3)
    src = points @ matrix.transpose(1, 2)  # [n, h*w, 2]
    grid = torch.stack([src[..., 0] / w * 2 - 1, src[..., 1] / h * 2 - 1], dim=-1).view(n, h, w, 2)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def _matrices(n: int, device: torch.device) -> torch.Tensor:
    m = torch.zeros(n, 2, 3, device=device)
    m[:, 0, 0] = 1
    m[:, 1, 1] = 1
    return m


def rotate(x: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Rotate counter-clockwise by `degrees` about the image centre (PIL's Image.rotate)."""
    n, _, h, w = x.shape
    a = degrees * (-math.pi / 180)  # PIL's inverse map turns by -angle
    cos, sin = a.cos(), a.sin()
    cx, cy = w / 2, h / 2
    m = _matrices(n, x.device)
    m[:, 0, 0], m[:, 0, 1] = cos, sin
    m[:, 1, 0], m[:, 1, 1] = -sin, cos
    m[:, 0, 2] = cx - cos * cx - sin * cy
    m[:, 1, 2] = cy + sin * cx - cos * cy
    return affine(x, m)


def _one_entry(x: torch.Tensor, row: int, col: int, v: torch.Tensor) -> torch.Tensor:
    """`affine` with the identity map plus `v` at matrix entry (row, col): a shear or a shift per image."""
    m = _matrices(len(x), x.device)
    m[:, row, col] = v
    return affine(x, m)


def shear_x(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return _one_entry(x, 0, 1, v)


def shear_y(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return _one_entry(x, 1, 0, v)


def translate_x(x: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    return _one_entry(x, 0, 2, pixels)


def translate_y(x: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    return _one_entry(x, 1, 2, pixels)


def _magnitude(op: str, u: torch.Tensor, h: int, w: int, shear: float, translate: float) -> torch.Tensor:
    """The op's argument from a uniform draw u in [0, 1) (symmetric ranges for the geometric ops)."""
    lo, hi = FACTOR_RANGE
    if op == "rotate":
        return (2 * u - 1) * ROTATE_DEGREES
    if op == "solarize":
        return u * 256
    if op in ("color", "contrast", "brightness", "sharpness"):
        return lo + (hi - lo) * u
    if op in ("shear_x", "shear_y"):
        return (2 * u - 1) * shear
    if op == "translate_x":
        return (2 * u - 1) * translate * w
    if op == "translate_y":
        return (2 * u - 1) * translate * h
    if op == "posterize":
        b0, b1 = POSTERIZE_BITS
        return (b0 + u * (b1 - b0 + 1)).floor().clamp(max=b1)  # integer bits, uniform over b0..b1
    return u


_APPLY: dict[str, Callable[..., torch.Tensor]] = {
    "autocontrast": lambda x, v: autocontrast(x), "equalize": lambda x, v: equalize(x), "rotate": rotate,
    "solarize": solarize, "color": color, "contrast": contrast, "brightness": brightness, "sharpness": sharpness,
    "shear_x": shear_x, "shear_y": shear_y, "translate_x": translate_x, "translate_y": translate_y,
    "posterize": posterize,
}


def split_draws(u: torch.Tensor, num_ops: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Uniform [N, 2 * num_ops] draws -> (op indices, uniform magnitude draws), each [N, num_ops]: the ops are
    uniform over OPS, with replacement."""
    ops = (u[:, :num_ops] * len(OPS)).floor().long().clamp(max=len(OPS) - 1)
    return ops, u[:, num_ops:]


def draw(n: int, num_ops: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(ops, draws) for `n` images from `generator` (what a view does with its own generator)."""
    return split_draws(torch.rand((n, 2 * num_ops), generator=generator), num_ops)


def rand_augment(x: torch.Tensor, num_ops: int, ops: torch.Tensor, draws: torch.Tensor, shear: float = 0.1,
                 translate: float = 0.1) -> torch.Tensor:
    """Apply per image `num_ops` ops in sequence: image i's step s is op OPS[ops[i, s]] at the magnitude from
    the uniform draw `draws[i, s]`. `x` is float in [0, 1], [N, C, H, W]; ops/draws are [N, num_ops]."""
    n, _, h, w = x.shape
    x = x.clone()
    for step in range(num_ops):
        for k, op in enumerate(OPS):
            if op == "identity":
                continue
            idx = (ops[:, step] == k).nonzero().squeeze(1)
            if idx.numel():
                x[idx] = _APPLY[op](x[idx], _magnitude(op, draws[idx, step], h, w, shear, translate))
    return x

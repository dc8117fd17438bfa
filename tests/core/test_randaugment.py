"""Batched RandAugment: each op against torchvision's functional op (or PIL's, where SCAN calls PIL), on a batch
with one magnitude per image; the view draws per image and reproduces with a seeded generator."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image

from toolkit.data import randaugment as ra
from toolkit.data.views import AugmentConfig, BatchView


def batch(channels: int = 3, n: int = 4, size: int = 16, seed: int = 0) -> torch.Tensor:
    """uint8 images with structure (gradients + blocks), so geometric and histogram ops have work to do."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randint(0, 256, (n, channels, size // 4, size // 4), generator=g, dtype=torch.uint8)
    blocks = base.repeat_interleave(4, 2).repeat_interleave(4, 3).int()
    ramp = torch.arange(size).view(1, 1, 1, -1) * 3
    return ((blocks + ramp) % 256).to(torch.uint8)


def to_float(u8: torch.Tensor) -> torch.Tensor:
    return u8.float() / 255


def per_image(u8: torch.Tensor, fn) -> torch.Tensor:  # type: ignore[no-untyped-def]
    return torch.stack([fn(img, i) for i, img in enumerate(u8)])


def pil(img: torch.Tensor) -> Image.Image:
    arr = img.permute(1, 2, 0).numpy()
    return Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr)


def from_pil(im: Image.Image) -> torch.Tensor:
    arr = np.asarray(im)
    arr = arr[..., None] if arr.ndim == 2 else arr
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


@pytest.mark.parametrize("channels", [1, 3])
def test_histogram_ops_match_torchvision_exactly(channels: int) -> None:
    u8 = batch(channels)
    x = to_float(u8)
    assert torch.equal(ra.equalize(x), to_float(TF.equalize(u8)))
    thresholds = torch.tensor([0.0, 64.0, 128.0, 255.0])
    expect = per_image(u8, lambda img, i: TF.solarize(img, float(thresholds[i])))
    assert torch.allclose(ra.solarize(x, thresholds), to_float(expect), atol=1e-6)
    bits = torch.tensor([4.0, 5.0, 6.0, 8.0])
    expect = per_image(u8, lambda img, i: TF.posterize(img, int(bits[i])))
    assert torch.allclose(ra.posterize(x, bits), to_float(expect), atol=1e-6)
    assert torch.allclose(ra.autocontrast(x), to_float(TF.autocontrast(u8)), atol=1.5 / 255)


def test_equalize_is_identity_on_a_constant_image() -> None:
    x = torch.full((1, 3, 8, 8), 0.5)
    assert torch.equal(ra.equalize(x), ra._levels(x) / 255)


@pytest.mark.parametrize("op, tv", [("color", TF.adjust_saturation), ("contrast", TF.adjust_contrast),
                                    ("brightness", TF.adjust_brightness), ("sharpness", TF.adjust_sharpness)])
def test_enhance_ops_match_torchvision(op: str, tv) -> None:  # type: ignore[no-untyped-def]
    u8 = batch(3)
    x = to_float(u8)
    factors = torch.tensor([0.05, 0.3, 0.6, 0.95])
    ours = getattr(ra, op)(x, factors)
    expect = per_image(x, lambda img, i: tv(img.unsqueeze(0), float(factors[i])).squeeze(0))
    # torchvision's luma weighs red 0.2989 (PIL and ours: 0.299): a difference far below one uint8 level
    assert torch.allclose(ours, expect, atol=1e-3), (ours - expect).abs().max()
    assert not torch.allclose(ours, x, atol=1e-3)  # the op did something


def test_rotate_matches_pil_and_torchvision() -> None:
    u8 = batch(3, size=20)
    degrees = torch.tensor([-30.0, -7.5, 12.0, 30.0])
    ours = (ra.rotate(to_float(u8), degrees) * 255).round().to(torch.uint8)
    by_pil = per_image(u8, lambda img, i: from_pil(pil(img).rotate(float(degrees[i]))))
    by_tv = per_image(u8, lambda img, i: TF.rotate(img, float(degrees[i])))
    # nearest-neighbour resampling: only pixels whose source lies on a rounding boundary may differ
    assert (ours != by_pil).any(dim=0).float().mean() < 0.03
    assert (ours != by_tv).any(dim=0).float().mean() < 0.03
    assert (ours != u8).any(dim=0).float().mean() > 0.3


@pytest.mark.parametrize("op", ["shear_x", "shear_y", "translate_x", "translate_y"])
def test_shear_and_translate_match_pil_affine(op: str) -> None:
    """SCAN's ops: img.transform(size, AFFINE, (1, v, 0, 0, 1, 0)) and friends."""
    u8 = batch(3, size=20)
    values = {"shear_x": [-0.3, -0.1, 0.05, 0.3], "shear_y": [-0.3, -0.1, 0.05, 0.3],
              "translate_x": [-6.0, -2.0, 3.0, 6.0], "translate_y": [-6.0, -2.0, 3.0, 6.0]}[op]
    coeffs = {"shear_x": lambda v: (1, v, 0, 0, 1, 0), "shear_y": lambda v: (1, 0, 0, v, 1, 0),
              "translate_x": lambda v: (1, 0, v, 0, 1, 0), "translate_y": lambda v: (1, 0, 0, 0, 1, v)}[op]
    v = torch.tensor(values)
    ours = (getattr(ra, op)(to_float(u8), v) * 255).round().to(torch.uint8)
    expect = per_image(u8, lambda img, i: from_pil(pil(img).transform(pil(img).size, Image.AFFINE,
                                                                        coeffs(values[i]))))
    assert (ours != expect).any(dim=0).float().mean() < 0.03
    assert (ours != u8).any(dim=0).float().mean() > 0.2


def test_translate_matches_torchvision_with_the_sign_flipped() -> None:
    """PIL's AFFINE maps output to input (content moves by -v); torchvision's translate moves content by +v."""
    u8 = batch(3, size=20)
    ours = (ra.translate_x(to_float(u8), torch.full((4,), 3.0)) * 255).round().to(torch.uint8)
    assert torch.equal(ours, TF.affine(u8, angle=0.0, translate=[-3, 0], scale=1.0, shear=[0.0, 0.0]))


def test_each_image_draws_its_own_ops_and_a_seed_reproduces_them() -> None:
    cfg = AugmentConfig(randaugment=4)
    view = BatchView(cfg, [0.5] * 3, [0.25] * 3)
    u8 = batch(3, n=64, size=16)
    a = view(u8, torch.Generator().manual_seed(3))
    b = view(u8, torch.Generator().manual_seed(3))
    c = view(u8, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    raw = BatchView(None, [0.5] * 3, [0.25] * 3)(u8)
    changed = (a - raw).abs().flatten(1).amax(1) > 1e-4
    assert 0.8 < changed.float().mean() <= 1.0  # 4 ops: only an all-identity draw (1/14^4) leaves an image


def test_op_draws_are_uniform_over_the_fourteen_ops() -> None:
    g = torch.Generator().manual_seed(0)
    ops, draws = ra.draw(20000, 2, g)
    counts = torch.bincount(ops.flatten(), minlength=len(ra.OPS)).float()
    assert len(counts) == 14
    assert (counts / counts.mean() - 1).abs().max() < 0.08
    bits = ra._magnitude("posterize", draws.flatten(), 32, 32, 0.1, 0.1)
    assert set(bits.unique().tolist()) == {4.0, 5.0, 6.0, 7.0, 8.0}

"""Batched random views: normalisation, determinism, per-sample randomness and each op's effect."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from toolkit.data.views import AugmentConfig, BatchView, channel_stats

MEAN, STD = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]
STRONG = AugmentConfig(
    crop_scale=(0.2, 1.0), hflip=0.5, degrees=15, translate=0.1, shear=5, scale=(0.9, 1.1),
    brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1, jitter_p=0.8, grayscale=0.2, blur=0.5,
    noise=0.05, cutout=0.25,
)  # fmt: skip


def _images(n: int = 8, c: int = 3, h: int = 16, w: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, h, w), generator=g, dtype=torch.uint8)


def _normalise(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(MEAN).view(1, -1, 1, 1)
    std = torch.tensor(STD).view(1, -1, 1, 1)
    return (x.float() / 255 - mean) / std


def test_raw_view_is_pure_normalisation() -> None:
    x = _images()
    for cfg in (None, AugmentConfig()):
        out = BatchView(cfg, MEAN, STD)(x, torch.Generator().manual_seed(0))
        assert out.dtype == torch.float32 and out.shape == x.shape
        assert torch.allclose(out, _normalise(x), atol=1e-6)


def test_strong_view_shape_dtype_and_determinism() -> None:
    x = _images(n=6, h=20, w=24)
    view = BatchView(STRONG, MEAN, STD)
    a = view(x, torch.Generator().manual_seed(7))
    b = view(x, torch.Generator().manual_seed(7))
    c = view(x, torch.Generator().manual_seed(8))
    assert a.shape == x.shape and a.dtype == torch.float32
    assert torch.isfinite(a).all()
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_samples_in_one_batch_get_different_augmentations() -> None:
    one = _images(n=1, h=32, w=32)
    x = one.expand(12, -1, -1, -1).contiguous()
    for cfg in (STRONG, AugmentConfig(degrees=30), AugmentConfig(brightness=0.5, jitter_p=1.0), AugmentConfig(noise=0.1)):
        out = BatchView(cfg, MEAN, STD)(x, torch.Generator().manual_seed(0))
        flat = out.flatten(1)
        distances = torch.cdist(flat, flat)
        off_diagonal = distances[~torch.eye(12, dtype=torch.bool)]
        assert (off_diagonal > 1e-3).all(), cfg


def test_hflip_one_flips_exactly() -> None:
    x = _images(n=4, h=9, w=13)
    out = BatchView(AugmentConfig(hflip=1.0), MEAN, STD)(x, torch.Generator().manual_seed(0))
    assert torch.allclose(out, _normalise(x.flip(-1)), atol=1e-6)
    # through the affine path too (a near-identity scale range forces the grid_sample route)
    cfg = AugmentConfig(hflip=1.0, scale=(1.0, 1.0 + 1e-7))
    out = BatchView(cfg, MEAN, STD)(x, torch.Generator().manual_seed(0))
    assert torch.allclose(out, _normalise(x.flip(-1)), atol=1e-3)


def test_translation_moves_content_by_whole_pixels() -> None:
    """A translate-only affine keeps pixel values (shifted by the drawn amount) inside the image."""
    x = torch.zeros((64, 1, 16, 16), dtype=torch.uint8)
    x[:, :, 6:10, 6:10] = 255
    out = BatchView(AugmentConfig(translate=0.25), [0.0], [1.0])(x, torch.Generator().manual_seed(0))
    centres = [(o[0] > 0.5).nonzero().float().mean(0) for o in out]
    shifts = torch.stack(centres) - 7.5
    assert shifts.abs().max() <= 4.5  # at most 25% of 16 pixels, plus interpolation spread
    assert shifts.abs().max() > 1.0 and shifts.std(0).min() > 0.5  # really random per sample


def test_cutout_zeroes_one_square_region() -> None:
    x = torch.full((5, 3, 16, 16), 255, dtype=torch.uint8)
    out = BatchView(AugmentConfig(cutout=0.5), MEAN, STD)(x, torch.Generator().manual_seed(0))
    zero = (out == 0).all(dim=1)  # [B, H, W]
    corners = []
    for z in zero:
        assert int(z.sum()) == 64
        ys, xs = z.nonzero(as_tuple=True)
        assert int(ys.max() - ys.min()) == 7 and int(xs.max() - xs.min()) == 7
        corners.append((int(ys.min()), int(xs.min())))
    assert len(set(corners)) > 1
    assert torch.allclose(out[~zero.unsqueeze(1).expand_as(out)].view(-1).unique().sort().values,
                          _normalise(x[:1, :, :1, :1]).view(-1).unique().sort().values)


def test_random_cutout_follows_scans_distribution() -> None:
    """cutout_random: sides uniform in 1..16 on 32x32 images, centred anywhere, clipped at the borders: each
    hole is a rectangle no larger than 16x16, and the mean zeroed share matches the same draw done by hand
    (SCAN's Cutout: about 6.9% of a CIFAR image)."""
    n = 4000
    x = torch.full((n, 1, 32, 32), 255, dtype=torch.uint8)
    out = BatchView(AugmentConfig(cutout=0.5, cutout_random=True), [0.0], [1.0])(x, torch.Generator().manual_seed(0))
    zero = out[:, 0] == 0
    rows, cols = zero.any(2), zero.any(1)
    heights, widths = rows.sum(1), cols.sum(1)
    assert int(heights.max()) <= 16 and int(widths.max()) <= 16 and int(heights.min()) >= 1
    assert torch.equal(zero.sum((1, 2)), heights * widths)  # one solid rectangle per image
    assert len(set(heights.tolist())) > 10  # random sides, not one fixed size
    rng = torch.Generator().manual_seed(1)  # the same distribution by direct simulation
    side = torch.randint(1, 17, (n,), generator=rng)
    cy, cx = torch.randint(0, 32, (n,), generator=rng), torch.randint(0, 32, (n,), generator=rng)
    y0, x0 = cy - side // 2, cx - side // 2
    area = ((y0 + side).clamp(max=32) - y0.clamp(min=0)) * ((x0 + side).clamp(max=32) - x0.clamp(min=0))
    expected = float(area.float().mean()) / 1024
    assert abs(float(zero.float().mean()) - expected) < 0.006 and 0.05 < expected < 0.09


def test_grayscale_blur_and_jitter_change_images_as_expected() -> None:
    x = _images(n=8, h=32, w=32)
    gray = BatchView(AugmentConfig(grayscale=1.0), [0.0], [1.0])(x)
    assert torch.allclose(gray[:, 0], gray[:, 1]) and torch.allclose(gray[:, 1], gray[:, 2])

    blurred = BatchView(AugmentConfig(blur=1.0, blur_sigma=(1.5, 2.0)), [0.0], [1.0])(x)
    raw = x.float() / 255
    assert blurred.var(dim=(2, 3)).mean() < 0.5 * raw.var(dim=(2, 3)).mean()
    assert torch.allclose(blurred.mean(dim=(2, 3)), raw.mean(dim=(2, 3)), atol=0.02)

    dark = BatchView(AugmentConfig(brightness=0.9, jitter_p=1.0), [0.0], [1.0])
    means = dark(x, torch.Generator().manual_seed(1)).mean(dim=(1, 2, 3)) / raw.mean(dim=(1, 2, 3))
    assert means.std() > 0.1


def test_hue_shift_keeps_gray_pixels_and_changes_colour_ones() -> None:
    x = torch.zeros((4, 3, 4, 4), dtype=torch.uint8)
    x[:, :, :2] = 128  # gray rows have no hue
    x[:, 0, 2:] = 255  # red rows do
    out = BatchView(AugmentConfig(hue=0.5, jitter_p=1.0), [0.0], [1.0])(x, torch.Generator().manual_seed(3))
    assert torch.allclose(out[:, :, :2], torch.full_like(out[:, :, :2], 128 / 255), atol=1e-5)
    assert not torch.allclose(out[:, :, 2:], x[:, :, 2:].float() / 255, atol=1e-2)
    assert torch.allclose(out[:, :, 2:].amax(dim=1), torch.ones(4, 2, 4), atol=1e-5)  # value kept


def test_single_channel_images_and_broadcast_stats() -> None:
    x = _images(n=4, c=1, h=8, w=8)
    out = BatchView(STRONG, [0.5], [0.5])(x, torch.Generator().manual_seed(0))
    assert out.shape == (4, 1, 8, 8) and torch.isfinite(out).all()
    with pytest.raises(ValueError):
        BatchView(None, [0.5, 0.5], [0.5, 0.5])(x)


def test_config_validation() -> None:
    with pytest.raises(ValidationError):
        AugmentConfig(hflip=1.5)
    with pytest.raises(ValidationError):
        AugmentConfig(crop_scale=(0.8, 0.2))
    with pytest.raises(ValidationError):
        AugmentConfig(crop_scale=(0.0, 1.0))
    with pytest.raises(ValidationError):
        AugmentConfig(blurr=0.5)
    with pytest.raises(ValidationError):
        AugmentConfig(hue=0.7)
    assert AugmentConfig(hflip=0.5).hflip == 0.5


def test_channel_stats_per_channel() -> None:
    x = torch.zeros((10, 2, 4, 4), dtype=torch.uint8)
    x[:, 0] = 255
    x[:5, 1] = 255
    mean, std = channel_stats(x, chunk=3)
    assert mean == pytest.approx([1.0, 0.5]) and std == pytest.approx([0.0, 0.5])


def test_one_grid_sample_per_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """All geometric ops of all samples go through a single grid_sample call (no per-sample loop)."""
    import toolkit.data.views as views

    calls = []
    real = views.F.grid_sample

    def counting(*args, **kwargs):
        calls.append(args[0].shape)
        return real(*args, **kwargs)

    monkeypatch.setattr(views.F, "grid_sample", counting)
    x = _images(n=64, h=32, w=32)
    out = BatchView(STRONG, MEAN, STD)(x, torch.Generator().manual_seed(0))
    assert calls == [torch.Size([64, 3, 32, 32])] and out.shape == x.shape

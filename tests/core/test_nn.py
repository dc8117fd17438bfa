"""Backbone/head shapes, config validation and device selection (GPU checks skipped without CUDA)."""

import pytest
import torch
from pydantic import ValidationError

from toolkit.api.precision import autocast
from toolkit.run.device import resolve_device
from toolkit.errors import UserError
from toolkit.nn.backbones import BACKBONES, build_backbone, register_backbone
from toolkit.nn.config import BackboneConfig
from toolkit.nn.heads import ClusterHead


@pytest.mark.parametrize(
    ("name", "channels", "size", "dim"),
    [
        ("mlp", 1, 8, 512),
        ("mlp", 3, 32, 512),
        ("small_cnn", 1, 8, 128 * 2 * 2),
        ("small_cnn", 3, 32, 128 * 4 * 4),
        ("small_cnn", 1, 28, 128 * 4 * 4),
        ("resnet18", 3, 32, 512),
        ("resnet18", 1, 32, 512),
        ("resnet34", 3, 32, 512),
        ("resnet34_maxpool", 3, 32, 512),
        ("resnet18_maxpool", 3, 32, 512),
        ("resnet18_imagenet", 3, 64, 512),
        ("resnet34_imagenet", 1, 64, 512),
    ],
)
def test_backbone_shapes(name, channels, size, dim):
    torch.manual_seed(0)
    net = build_backbone(BackboneConfig(name=name), channels, (size, size))
    assert isinstance(net.out_dim, int) and net.out_dim == dim
    with torch.no_grad():
        out = net(torch.randn(2, channels, size, size))
    assert out.shape == (2, dim)


def test_config_knobs_and_projection():
    net = build_backbone(BackboneConfig(name="mlp", hidden_dims=[32, 16]), 1, (8, 8))
    assert net.out_dim == 16
    net = build_backbone(BackboneConfig(name="small_cnn", width=8, out_dim=10), 1, (8, 8))
    assert net.out_dim == 10 and net(torch.randn(3, 1, 8, 8)).shape == (3, 10)


def test_resnet_stems_differ_where_their_names_say():
    """The ImageNet stem quarters the side before the first stage (7x7 stride-2 conv, 3x3 stride-2 max-pool), the
    IIC stem halves it (2x2 max-pool after a stride-1 conv), the CIFAR stem keeps it: layer1's output side tells."""
    sides = {}
    for name in ("resnet18", "resnet18_maxpool", "resnet18_imagenet", "resnet34_imagenet"):
        net = build_backbone(BackboneConfig(name=name), 3, (64, 64)).eval()
        x = torch.randn(1, 3, 64, 64)
        with torch.no_grad():
            sides[name] = net.layer1(net.maxpool(net.relu(net.bn1(net.conv1(x))))).shape[-1]
    assert sides == {"resnet18": 64, "resnet18_maxpool": 33, "resnet18_imagenet": 16, "resnet34_imagenet": 16}
    net = build_backbone(BackboneConfig(name="resnet34_imagenet"), 2, (64, 64))
    assert net.conv1.kernel_size == (7, 7) and net.conv1.in_channels == 2 and len(net.layer3) == 6


def test_resnet_uses_cifar_stem():
    net = build_backbone(BackboneConfig(name="resnet18"), 1, (32, 32))
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1) and net.conv1.in_channels == 1
    assert isinstance(net.maxpool, torch.nn.Identity) and isinstance(net.fc, torch.nn.Identity)


def test_sobel_front_end_sees_grey_gradients_only():
    """IIC/PICA's Sobel: a flat image gives zero gradients, a vertical edge only G_x, and two images with the
    same grey level but different colours give the same features (colour is no cue); nothing in it trains."""
    torch.manual_seed(0)
    net = build_backbone(BackboneConfig(name="resnet34_maxpool", sobel=True), 3, (16, 16)).eval()
    assert net.out_dim == 512 and net.body.conv1.in_channels == 2
    assert {n for n, _ in net.named_buffers()} >= {"grey", "kernels"}
    assert not any("grey" in n or "kernels" in n for n, _ in net.named_parameters())
    flat = torch.full((1, 3, 8, 8), 0.3)
    edge = torch.zeros(1, 3, 8, 8)
    edge[..., 4:] = 1.0
    grads = torch.nn.functional.conv2d(torch.nn.functional.conv2d(edge, net.grey), net.kernels, padding=1)
    assert torch.count_nonzero(torch.nn.functional.conv2d(torch.nn.functional.conv2d(flat, net.grey), net.kernels,
                                                          padding=1)[..., 1:-1, 1:-1]) == 0
    assert grads[0, 0, 1:-1, 3:5].abs().min() > 0 and torch.count_nonzero(grads[0, 1, 1:-1, 1:-1]) == 0
    x = torch.rand(2, 3, 16, 16)
    recoloured = x[:, [2, 0, 1]]  # same grey level (the channels' mean), other colours
    with torch.no_grad():
        assert torch.allclose(net(x), net(recoloured), atol=1e-5)
        plain = build_backbone(BackboneConfig(name="resnet34_maxpool"), 3, (16, 16)).eval()
        assert not torch.allclose(plain(x), plain(recoloured), atol=1e-3)


def test_config_validation():
    with pytest.raises(ValidationError, match="valid names: mlp, resnet18, resnet18_imagenet, "
                       "resnet18_maxpool, resnet34, resnet34_imagenet, resnet34_maxpool, small_cnn"):
        BackboneConfig(name="resnet1")
    with pytest.raises(ValidationError):
        BackboneConfig(name="mlp", depth=3)
    with pytest.raises(ValidationError):
        BackboneConfig(name="mlp", hidden_dims=[])


def test_register_backbone():
    class Tiny(torch.nn.Module):
        out_dim = 4

        def forward(self, x):
            return x.flatten(1)[:, :4]

    register_backbone("tiny_test", lambda cfg, c, s: Tiny())
    try:
        assert build_backbone(BackboneConfig(name="tiny_test"), 1, (8, 8))(torch.zeros(2, 1, 8, 8)).shape == (2, 4)
        with pytest.raises(ValueError):
            register_backbone("tiny_test", lambda cfg, c, s: Tiny())
    finally:
        BACKBONES.pop("tiny_test")


def test_cluster_head_variants():
    linear = ClusterHead(16, 5)
    assert linear(torch.randn(3, 16)).shape == (3, 5)
    assert linear.first is linear.last and isinstance(linear.first, torch.nn.Linear)
    mlp = ClusterHead(16, 5, hidden_dim=32)
    assert mlp(torch.randn(3, 16)).shape == (3, 5)
    assert mlp.first.out_features == 32 and mlp.last.in_features == 32 and mlp.last.out_features == 5
    with torch.no_grad():
        mlp.last.weight.zero_()
        mlp.last.bias.fill_(1.0)
    assert torch.equal(mlp(torch.randn(2, 16)), torch.ones(2, 5))


def test_resolve_device_cpu_and_auto(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with autocast(torch.device("cpu")):
        assert not torch.is_autocast_enabled()


@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_resolve_device_cuda_unavailable(monkeypatch, name):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="CUDA is not available"):
        resolve_device(name)


def test_resolve_device_unknown_name():
    with pytest.raises(UserError, match="unknown device"):
        resolve_device("tpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_device_and_bf16_autocast():
    device = resolve_device("auto")
    assert device.type == "cuda"
    net = build_backbone(BackboneConfig(name="small_cnn", width=8), 3, (32, 32)).to(device)
    with autocast(device):
        out = net(torch.randn(2, 3, 32, 32, device=device))
    assert out.dtype == torch.bfloat16 and out.shape == (2, net.out_dim)
    with pytest.raises(UserError):
        resolve_device(f"cuda:{torch.cuda.device_count()}")

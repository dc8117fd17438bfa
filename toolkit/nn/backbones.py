"""Feature backbones by name: each maps images [B,C,H,W] to features [B,D] and exposes ``out_dim = D``.

Recipes name a backbone; plugins may add more with ``register_backbone`` (e.g. from entry points).
"""

from __future__ import annotations

from typing import Callable, Literal

import torch
from torch import nn

from toolkit.nn.config import BackboneConfig
from toolkit.nn.timm_backbone import build_timm, is_timm_name

#: A builder receives the config, the image channel count and (height, width) and returns the module.
BackboneBuilder = Callable[[BackboneConfig, int, tuple[int, int]], nn.Module]


class MLPBackbone(nn.Module):
    """Flattened pixels through Linear-BN-ReLU layers; a baseline that ignores image structure."""

    def __init__(self, in_features: int, hidden_dims: list[int]):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        prev = in_features
        for dim in hidden_dims:
            layers += [nn.Linear(prev, dim), nn.BatchNorm1d(dim), nn.ReLU(inplace=True)]
            prev = dim
        self.net = nn.Sequential(*layers)
        self.out_dim = prev

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class SmallCNN(nn.Module):
    """Three conv-BN-ReLU blocks for 8x8..32x32 images.

    The last map is average-pooled to at most 4x4 and flattened rather than globally pooled,
    because where strokes are (digit layout) is what separates the classes of small images.
    """

    def __init__(self, in_channels: int, image_size: tuple[int, int], width: int = 64):
        super().__init__()
        h, w = image_size
        grid = (max(1, min(4, h // 4)), max(1, min(4, w // 4)))
        self.net = nn.Sequential(
            *_conv_bn_relu(in_channels, width),
            nn.MaxPool2d(2) if min(h, w) >= 2 else nn.Identity(),
            *_conv_bn_relu(width, 2 * width),
            nn.MaxPool2d(2) if min(h, w) >= 4 else nn.Identity(),
            *_conv_bn_relu(2 * width, 2 * width),
            nn.AdaptiveAvgPool2d(grid),
            nn.Flatten(),
        )
        self.out_dim = 2 * width * grid[0] * grid[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Sobel(nn.Module):
    """A backbone behind IIC's and PICA's fixed Sobel front end: grey = the channels' mean (PICA's 1x1 conv with
    weights 1/3), then its horizontal and vertical Sobel gradients, padded to keep the size. Buffers, not
    parameters: nothing trains or re-initialises them."""

    def __init__(self, body: nn.Module, in_channels: int):
        super().__init__()
        self.body = body
        gx = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
        self.register_buffer("grey", torch.full((1, in_channels, 1, 1), 1.0 / in_channels))
        self.register_buffer("kernels", torch.stack([gx, gx.t()]).unsqueeze(1))  # [2, 1, 3, 3]: G_x, G_y
        self.out_dim = int(body.out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grey = nn.functional.conv2d(x, self.grey.to(x.dtype))
        return self.body(nn.functional.conv2d(grey, self.kernels.to(x.dtype), padding=1))


class Projected(nn.Module):
    """A backbone followed by Linear-BN-ReLU to a chosen feature size (``BackboneConfig.out_dim``)."""

    def __init__(self, body: nn.Module, out_dim: int):
        super().__init__()
        self.body = body
        self.proj = nn.Sequential(nn.Linear(int(body.out_dim), out_dim), nn.BatchNorm1d(out_dim), nn.ReLU(inplace=True))
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.body(x))


def _resnet(depth: int, in_channels: int, stem: Literal["cifar", "maxpool", "imagenet"]) -> nn.Module:
    """torchvision ResNet without its classifier, with one of three stems:

    - "cifar": 3x3 stride-1 conv, no max-pool (full resolution in the first stage);
    - "maxpool": IIC's ClusterResNet stem, the same conv then a 2x2 stride-2 max-pool with padding 1, which
      SPICE's ResNet-34 and its released weights use, PICA's ResNet-34 (DRC's network; with `[model] sobel`) and
      SCAN's STL-10 ResNet-18;
    - "imagenet": torchvision's own (7x7 stride-2 conv, 3x3 stride-2 max-pool), what solo-learn (CDC's
      pretraining) keeps for every data set but CIFAR; on 96-224 px images 16x cheaper than the CIFAR stem.

    torchvision is imported here, not at module level: importing it costs about a second (it loads
    torch._dynamo), which every MLP / small-CNN run and every CLI call would otherwise pay."""
    from torchvision import models

    net = {18: models.resnet18, 34: models.resnet34}[depth](weights=None)
    if stem != "imagenet" or in_channels != 3:
        conv = (7, 2, 3) if stem == "imagenet" else (3, 1, 1)  # kernel, stride, padding
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=conv[0], stride=conv[1], padding=conv[2], bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")  # as torchvision does
    if stem != "imagenet":
        net.maxpool = nn.MaxPool2d(kernel_size=2, stride=2, padding=1) if stem == "maxpool" else nn.Identity()
    net.fc = nn.Identity()
    net.out_dim = 512
    return net


def _build_mlp(cfg: BackboneConfig, in_channels: int, image_size: tuple[int, int]) -> nn.Module:
    return MLPBackbone(in_channels * image_size[0] * image_size[1], list(cfg.hidden_dims))


def _build_small_cnn(cfg: BackboneConfig, in_channels: int, image_size: tuple[int, int]) -> nn.Module:
    return SmallCNN(in_channels, image_size, cfg.width)


def _build_resnet18(cfg: BackboneConfig, in_channels: int, image_size: tuple[int, int]) -> nn.Module:
    return _resnet(18, in_channels, "cifar")


def _build_resnet34(cfg: BackboneConfig, in_channels: int, image_size: tuple[int, int]) -> nn.Module:
    return _resnet(34, in_channels, "cifar")


def _build_resnet34_maxpool(cfg: BackboneConfig, in_channels: int, image_size: tuple[int, int]) -> nn.Module:
    return _resnet(34, in_channels, "maxpool")


def _build_resnet18_maxpool(cfg: BackboneConfig, in_channels: int, image_size: tuple[int, int]) -> nn.Module:
    return _resnet(18, in_channels, "maxpool")


def _build_resnet18_imagenet(cfg: BackboneConfig, in_channels: int, image_size: tuple[int, int]) -> nn.Module:
    return _resnet(18, in_channels, "imagenet")


def _build_resnet34_imagenet(cfg: BackboneConfig, in_channels: int, image_size: tuple[int, int]) -> nn.Module:
    return _resnet(34, in_channels, "imagenet")


BACKBONES: dict[str, BackboneBuilder] = {
    "mlp": _build_mlp,
    "small_cnn": _build_small_cnn,
    "resnet18": _build_resnet18,
    "resnet34": _build_resnet34,
    "resnet34_maxpool": _build_resnet34_maxpool,
    "resnet18_maxpool": _build_resnet18_maxpool,
    "resnet18_imagenet": _build_resnet18_imagenet,
    "resnet34_imagenet": _build_resnet34_imagenet,
}


def register_backbone(name: str, builder: BackboneBuilder) -> None:
    """Add a backbone under ``name``; refuses to silently replace an existing one."""
    if name in BACKBONES:
        raise ValueError(f"backbone {name!r} is already registered")
    BACKBONES[name] = builder


def build_backbone(cfg: BackboneConfig, in_channels: int, image_size: tuple[int, int]) -> nn.Module:
    """Build the named backbone (plus the optional projection); the result has an int ``out_dim``."""
    channels = 2 if cfg.sobel else in_channels  # the Sobel front end hands the backbone two gradient channels
    if is_timm_name(cfg.name):
        module = build_timm(cfg.name, channels, cfg.weights)
    else:
        module = BACKBONES[cfg.name](cfg, channels, tuple(image_size))
    if cfg.sobel:
        module = Sobel(module, in_channels)
    if not isinstance(getattr(module, "out_dim", None), int):
        raise TypeError(f"backbone {cfg.name!r} did not set an int attribute out_dim")
    if cfg.out_dim is not None:
        module = Projected(module, cfg.out_dim)
    return module

"""Recipe section describing the feature backbone; validated so typos fail before training starts."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class BackboneConfig(BaseModel):
    """Which backbone to build and its few size knobs.

    - ``name``: a key of ``toolkit.nn.backbones.BACKBONES`` (built-ins: mlp, small_cnn; resnet18 and
      resnet34 with the CIFAR stem; resnet18_maxpool and resnet34_maxpool with IIC's stem; resnet18_imagenet and
      resnet34_imagenet with torchvision's ImageNet stem), or ``timm:<model>`` for any timm model (``weights`` = a local file to load into it).
    - ``hidden_dims``: layer widths of ``mlp``; the feature is the last one. Ignored by other backbones.
    - ``width``: base channel count of ``small_cnn``. Ignored by other backbones.
    - ``out_dim``: when set, a Linear-BatchNorm-ReLU projection to this size is appended to any backbone;
      when None the feature size is the architecture's own (``module.out_dim`` tells it).
    - ``sobel``: IIC's and PICA's fixed front end before the backbone: the image's grey level, then its
      horizontal and vertical Sobel gradients (2 channels), so colour cannot be a clustering cue.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = "resnet18"
    hidden_dims: list[int] = Field(default_factory=lambda: [512, 512])
    width: int = Field(default=64, ge=1)
    out_dim: int | None = Field(default=None, ge=1)
    weights: str | None = None  # local weight file for timm backbones (never downloaded)
    sobel: bool = False

    @field_validator("name")
    @classmethod
    def _known_name(cls, value: str) -> str:
        return check_backbone_name(value)

    @field_validator("hidden_dims")
    @classmethod
    def _positive_dims(cls, value: list[int]) -> list[int]:
        if not value or any(d < 1 for d in value):
            raise ValueError("hidden_dims must be a non-empty list of positive integers")
        return value


def check_backbone_name(value: str) -> str:
    """A registered backbone name or `timm:<model>`; ValueError listing the valid names otherwise."""
    from toolkit.nn.backbones import BACKBONES
    from toolkit.nn.timm_backbone import check_timm_name, is_timm_name

    if is_timm_name(value):
        return check_timm_name(value)
    if value not in BACKBONES:
        raise ValueError(f"unknown backbone {value!r}; valid names: {', '.join(sorted(BACKBONES))} or timm:<model>")
    return value

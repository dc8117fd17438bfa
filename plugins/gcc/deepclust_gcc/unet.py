"""Class-conditional U-Nets from diffusers' UNet2DModel, in three sizes (`PRESETS`).

The cluster label enters through `num_class_embeds` (an embedding added to the time embedding): GCC's
"embedding of time and annotation" (Section 4.1), whose form the paper does not state.
"""

from __future__ import annotations

from typing import Literal

from torch import nn

Preset = Literal["tiny", "budget", "standard"]

#: (base channels, channel multipliers, res blocks per level, attention resolution or 0, norm groups)
PRESETS: dict[str, tuple[int, tuple[int, ...], int, int, int]] = {
    "tiny": (32, (1, 2), 1, 0, 8),
    "budget": (64, (1, 2, 2), 2, 16, 32),
    "standard": (128, (1, 2, 2, 2), 2, 16, 32),
}


def size_factor(preset: Preset) -> int:
    """The U-Net's input side must be a multiple of this (it halves the image once per level below the top)."""
    return 2 ** (len(PRESETS[preset][1]) - 1)


def build_unet(preset: Preset, image_size: int, channels: int, num_classes: int, dropout: float = 0.1) -> nn.Module:
    """A UNet2DModel for square `image_size` images predicting the noise, conditioned on a class id.

    Attention blocks sit at the preset's attention resolution (16x16 for the paper-size nets).
    """
    from diffusers import UNet2DModel

    ch, mult, layers, attn_res, groups = PRESETS[preset]
    levels = len(mult)
    if image_size % (2 ** (levels - 1)):
        raise ValueError(f"image size {image_size} is not divisible by {2 ** (levels - 1)} "
                         f"(the {preset} U-Net halves it {levels - 1} times)")
    down, up = [], []
    for level in range(levels):
        res = image_size // (2**level)
        down.append("AttnDownBlock2D" if res == attn_res else "DownBlock2D")
        up.insert(0, "AttnUpBlock2D" if res == attn_res else "UpBlock2D")
    return UNet2DModel(
        sample_size=image_size, in_channels=channels, out_channels=channels,
        down_block_types=tuple(down), up_block_types=tuple(up),
        block_out_channels=tuple(ch * m for m in mult), layers_per_block=layers,
        norm_num_groups=groups, dropout=dropout, num_class_embeds=num_classes,
        add_attention=attn_res > 0, attention_head_dim=None,  # None: one head over all channels (Ho et al.)
    )

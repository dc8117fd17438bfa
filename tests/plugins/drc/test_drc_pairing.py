"""DRC's pairs: with `pica_repeat` each image's original view is paired with each of its R augmented views, row
for row, in the order the loss reads them (z = originals tiled R times, zp = [all images' 1st augmentation,
all images' 2nd, ...]). A misaligned pairing would still give finite, decreasing losses, so it is checked
directly: features here carry the image's id and which view made them."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

import deepclust_drc.plugin as drc_plugin
from deepclust_drc.plugin import DRCPretrain


class IdAndView(nn.Module):
    """Backbone whose 'features' are (image id, view tag): the pixel value is the id, the view adds its tag."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value = x.flatten(1)[:, 0]
        return torch.stack([value.floor(), value - value.floor()], dim=1)


@pytest.mark.parametrize("concat_forward", [False, True])
def test_each_original_is_paired_with_its_own_augmentations(monkeypatch: pytest.MonkeyPatch,
                                                             concat_forward: bool) -> None:
    seen: dict[str, torch.Tensor] = {}
    weight = nn.Parameter(torch.zeros(1))

    def capture(z: torch.Tensor, zp: torch.Tensor, **kw: object):  # noqa: ANN202
        seen["z"], seen["zp"], seen["group"] = z, zp, kw.get("group")
        zero = (weight * 0).sum()
        return zero, {"af": zero, "ap": zero, "cr": zero}

    monkeypatch.setattr(drc_plugin, "drc_loss", capture)
    images = torch.arange(10, dtype=torch.float).view(-1, 1, 1, 1).expand(-1, 1, 2, 2)  # image i: all pixels i
    tags = {"weak": 0.0, "strong": 0.25}
    ctx = SimpleNamespace(
        device=torch.device("cpu"),
        views=SimpleNamespace(get=lambda name: (lambda x, gen: x + tags[name])),
        batches=lambda gen, size, drop_last: [torch.tensor([7, 2, 5, 0])],
        images=lambda index: images[index])
    plugin = DRCPretrain(DRCPretrain.Options(repeats=3, concat_forward=concat_forward, af_mask_repeats=True))
    plugin.batch_size = 4
    opt = torch.optim.SGD([weight], lr=0.1)
    plugin._pass(ctx, IdAndView(), nn.Identity(), opt, [weight], torch.Generator().manual_seed(0))
    z, zp = seen["z"], seen["zp"]
    assert z.shape == zp.shape == (12, 2)  # B originals tiled R = 3 times against R * B augmentations
    assert torch.equal(z[:, 0], zp[:, 0])  # row i of both sides is the same image
    assert z[:, 0].tolist() == [7, 2, 5, 0] * 3  # in the batch's order, augmentation by augmentation
    assert (z[:, 1] == 0.0).all() and (zp[:, 1] == 0.25).all()  # originals from the weak view, pairs from the strong
    assert seen["group"].tolist() == [0, 1, 2, 3] * 3  # the mask groups the rows of one image

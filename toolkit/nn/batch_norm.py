"""BatchNorm running statistics: leave them alone for a forward, or re-estimate them on real images.

Training forwards that are not the data (GCC's generated images, about half of its stage-II batches) still
move the running statistics that evaluation normalises with. Two remedies, each an option where it applies:
`frozen_statistics` (a forward that normalises with its batch but leaves the running statistics as they
were) and `recalibrate` ([train] bn_recalibrate: before each evaluation, the statistics are re-estimated
from a pass over the real training images, as torch's `swa_utils.update_bn` does for averaged weights).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def _norms(*modules: nn.Module) -> list[_BatchNorm]:
    return [m for module in modules for m in module.modules() if isinstance(m, _BatchNorm)]


@contextmanager
def frozen_statistics(*modules: nn.Module) -> Iterator[None]:
    """BatchNorm layers in `modules` keep their running statistics during the block (momentum 0: the running
    average takes none of the batch); in train mode they still normalise with the batch's own statistics."""
    norms = _norms(*modules)
    before = [(m.momentum, m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None)
              for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, tracked) in zip(norms, before):
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)


@torch.no_grad()
def recalibrate(backbone: nn.Module, head: nn.Module, images: torch.Tensor,
                view: Callable[[torch.Tensor], torch.Tensor], device: torch.device, batch_size: int = 512,
                backbone_frozen: bool = False) -> int:
    """Reset every BatchNorm's running statistics in `backbone` and `head` and re-estimate them as the plain
    average over a pass of `view(images)` in train mode (no gradient, weights untouched); the modules' modes
    are restored. A frozen backbone keeps its statistics (it runs in eval mode). Returns the number of layers
    re-estimated (0: nothing to do)."""
    norms = _norms(head) if backbone_frozen else _norms(backbone, head)
    if not norms:
        return 0
    modes = [(m, m.training) for m in (backbone, head)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the pass
    backbone.train(not backbone_frozen)
    head.train()
    try:
        for start in range(0, len(images), batch_size):
            chunk = images[start:start + batch_size]
            if len(chunk) < 2:  # a one-row batch has no variance to estimate
                continue
            head(backbone(view(chunk.to(device))))
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        for module, mode in modes:
            module.train(mode)
    return len(norms)

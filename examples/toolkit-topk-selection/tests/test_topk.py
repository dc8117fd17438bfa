"""The plugin's own tests: the rule on a hand-made batch, and discovery through its entry point."""

from __future__ import annotations

import torch

from toolkit.api import Batch
from toolkit.registry.entry_points import load
from toolkit_topk.selection import Options, TopKPerCluster


def _batch(conf: torch.Tensor) -> Batch:
    z = torch.zeros(len(conf), 1)
    b = Batch(index=torch.arange(len(conf)), epoch=1, step=0, weak=z, strong=z, features_weak=z, features_strong=z,
              logits_weak=conf.log(), logits_strong=conf.log())
    b.confidence = conf
    return b


def test_keeps_top_fraction_of_each_cluster() -> None:
    conf = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.7, 0.3], [0.2, 0.8], [0.45, 0.55]])
    sel = TopKPerCluster(Options(fraction=0.5)).select(_batch(conf))
    chosen = dict(zip(sel.index.tolist(), sel.labels.tolist()))
    assert chosen == {0: 0, 2: 0, 3: 1}  # cluster 0: round(1.5)=2 best of 3; cluster 1: 1 best of 2


def test_found_through_entry_point() -> None:
    assert load("selection", "topk") is TopKPerCluster

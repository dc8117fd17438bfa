"""The plugin's own tests: the rule on a hand-made batch, discovery through its entry point, and a real run."""

from __future__ import annotations

from pathlib import Path

import torch

from toolkit.api import Batch
from toolkit.testing import find_plugin, run_plugin
from toolkit_topk.selection import Options, TopKPerCluster


def _batch(conf: torch.Tensor) -> Batch:
    z = torch.zeros(len(conf), 1)
    return Batch(positions=torch.arange(len(conf)), epoch=1, step=0, weak=z, strong=z, features_weak=z,
                 features_strong=z, logits_weak=conf.log(), logits_strong=conf.log())


def test_keeps_top_fraction_of_each_cluster() -> None:
    conf = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.7, 0.3], [0.2, 0.8], [0.45, 0.55]])
    sel = TopKPerCluster(Options(fraction=0.5)).select(_batch(conf), conf)
    chosen = dict(zip(sel.rows.tolist(), sel.labels.tolist()))
    assert chosen == {0: 0, 2: 0, 3: 1}  # cluster 0: round(1.5)=2 best of 3; cluster 1: 1 best of 2


def test_found_through_entry_point() -> None:
    assert find_plugin("selection", "topk") is TopKPerCluster


def test_runs_in_the_real_engine_with_tracking(tmp_path: Path) -> None:
    result = run_plugin("selection", "topk", {"fraction": 0.5}, tmp_path=tmp_path)
    assert result.mlflow_run.info.status == "FINISHED"
    assert 0.0 < result.metric_history("selected_fraction")[-1] <= 0.6

"""DRC pointed at a data set smaller than its batch (a digits recipe on 96 images) trains with one batch of
all the images per pass, and says so, instead of stopping."""

from __future__ import annotations

from pathlib import Path

from toolkit.testing import run_plugin


def test_a_batch_larger_than_the_data_is_capped_with_a_warning(tmp_path: Path) -> None:
    result = run_plugin("pretrain", "drc", {"epochs": 2, "batch_size": 512, "aux_head": False}, tmp_path=tmp_path)
    assert result.mlflow_run.info.status == "FINISHED"
    losses = result.metric_history("pretrain_loss")
    assert len(losses) == 2 and all(v == v for v in losses)  # two epochs, each with a (finite) batch

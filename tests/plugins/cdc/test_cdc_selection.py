"""CDC's per-class quota selection on hand-computed batches, including the empty-selection guard."""

from __future__ import annotations

import torch

from deepclust_cdc.quota import quota_select
from deepclust_cdc.selection import CalibratedSelection
from toolkit.api.context import Batch, Selection
from toolkit.run.self_label import selection_loss


def test_quota_by_hand() -> None:
    probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.3, 0.7], [0.45, 0.55], [0.2, 0.8]])
    index, labels = quota_select(probs, per_class=3)
    # class 0: top-3 by p0 = rows 0,1,2, mean conf 0.767 -> floor(2.3) = 2 -> rows 0, 1
    # class 1: top-3 by p1 = rows 5,3,4, mean conf 0.683 -> floor(2.05) = 2 -> rows 5, 3
    assert index.tolist() == [0, 1, 3, 5] and labels.tolist() == [0, 0, 1, 1]


def test_code_ranking_vs_paper_ranking() -> None:
    probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.4, 0.6]])
    # class 1 candidates by p1: rows 3,2,1 (conf .6,.7,.8, mean .7 -> quota 2): row 2 joins with its argmax label 0
    index, labels = quota_select(probs, per_class=3, ranking="class_prob")
    assert index.tolist() == [0, 1, 2, 3] and labels.tolist() == [0, 0, 0, 1]
    index, labels = quota_select(probs, per_class=3, ranking="class_prob", require_argmax=True)
    assert index.tolist() == [0, 1, 3]
    # paper-literal: class 0 = rows 0,1,2 (mean .8 -> 2), class 1 = row 3 (.6 x 3 -> 1)
    index, labels = quota_select(probs, per_class=3, ranking="argmax")
    assert index.tolist() == [0, 1, 3] and labels.tolist() == [0, 0, 1]


def test_uncertain_class_gets_a_smaller_quota() -> None:
    sure = torch.tensor([[0.99, 0.01]] * 10)
    unsure = torch.tensor([[0.45, 0.55]] * 10)
    index, labels = quota_select(torch.cat([sure, unsure]), per_class=10)
    assert (labels == 0).sum() == 9 and (labels == 1).sum() == 5  # floor(.99 x 10), floor(.55 x 10)


def _batch(confidence: torch.Tensor) -> Batch:
    n = len(confidence)
    z = torch.zeros(n, confidence.shape[1], requires_grad=True)
    return Batch(positions=torch.arange(n), epoch=1, step=0, weak=z, strong=z, features_weak=z, features_strong=z,
                 logits_weak=z, logits_strong=z)


def test_plugin_default_cap_and_empty_guard() -> None:
    probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.3, 0.7], [0.45, 0.55], [0.2, 0.8]])
    sel = CalibratedSelection().select(_batch(probs), probs)  # M = floor(6 / 2) = 3, as test_quota_by_hand
    assert isinstance(sel, Selection) and sel.view == "strong" and sel.rows.tolist() == [0, 1, 3, 5]
    uniform = torch.full((4, 2), 0.5)  # with M = 1 every quota is floor(0.5 x 1) = 0
    empty = CalibratedSelection(CalibratedSelection.Options(per_class=1)).select(_batch(uniform), uniform)
    assert len(empty) == 0
    loss = selection_loss(_batch(uniform), empty)
    assert torch.isfinite(loss) and loss.item() == 0.0

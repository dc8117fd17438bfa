"""SPICE building blocks on small hand-made cases: prototype labels, head choice, reliability rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deepclust_spice.prototype import double_softmax_ce, head_score, prototype_labels
from deepclust_spice.reliable import consistency_ratio, neighbours, reliable_mask
from toolkit.run.events import EventBus, Observer
from toolkit.run.label_probe import PseudoLabelProbe


def _two_blobs() -> tuple[torch.Tensor, torch.Tensor]:
    """Six unit vectors, three near e0 and three near e1 (rows 0-2 and 3-5)."""
    f = torch.tensor([[1.0, 0.05], [1.0, 0.0], [1.0, -0.1], [0.1, 1.0], [0.0, 1.0], [-0.05, 1.0]])
    return F.normalize(f, dim=1), torch.tensor([0, 0, 0, 1, 1, 1])


def test_prototype_labels_label_the_rows_nearest_to_each_prototype() -> None:
    f, truth = _two_blobs()
    # the head is confident about row 1 for cluster 0 and row 4 for cluster 1, unsure elsewhere
    probs = torch.full((6, 2), 0.5)
    probs[1] = torch.tensor([0.9, 0.1])
    probs[4] = torch.tensor([0.1, 0.9])
    index, labels = prototype_labels(f, probs, per_cluster=3, center_ratio=1 / 3)
    assert labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert sorted(index[:3].tolist()) == [0, 1, 2] and sorted(index[3:].tolist()) == [3, 4, 5]
    assert torch.equal(truth[index], labels)


def test_prototype_labels_overlap_allows_a_row_twice_and_non_overlap_does_not() -> None:
    # rows 0-3 lean to e0 (row 3 also towards e1), rows 4-6 to e1, row 7 is far from both
    f = F.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.05], [1.0, -0.05], [1.0, 0.6],
                                  [0.0, 1.0], [0.05, 1.0], [-0.05, 1.0], [-1.0, -1.0]]), dim=1)
    probs = torch.full((8, 2), 0.5)
    probs[[0, 1]] = torch.tensor([0.9, 0.1])
    probs[[4, 5]] = torch.tensor([0.1, 0.9])
    index, labels = prototype_labels(f, probs, per_cluster=4, center_ratio=0.5, overlap=True)
    assert sorted(index[labels == 0].tolist()) == [0, 1, 2, 3]
    assert sorted(index[labels == 1].tolist()) == [3, 4, 5, 6]  # row 3 twice, row 7 never (label -1)
    index, labels = prototype_labels(f, probs, per_cluster=4, center_ratio=0.5, overlap=False)
    assert sorted(index.tolist()) == list(range(8))  # each row at most once
    assert sorted(index[labels == 1].tolist()) == [4, 5, 6, 7]
    with pytest.raises(ValueError):
        prototype_labels(f, probs, per_cluster=5)


def test_double_softmax_is_bounded_below() -> None:
    logits = torch.tensor([[50.0, -50.0, -50.0]])
    loss = double_softmax_ce(logits, torch.tensor([0]))
    assert loss.item() == pytest.approx(np.log(1 + 2 / np.e), rel=1e-4)  # never reaches 0: log(1 + (K-1)/e)
    assert F.cross_entropy(logits, torch.tensor([0])).item() < 1e-6


def test_head_score_prefers_the_head_that_separates_the_clusters() -> None:
    torch.manual_seed(0)
    centres = F.normalize(torch.randn(3, 16), dim=1) * 4
    truth = torch.arange(3).repeat_interleave(40)
    feats = centres[truth] + 0.3 * torch.randn(120, 16)
    embed = F.normalize(feats, dim=1)
    good = 5.0 * centres @ feats.T / 16              # logits aligned with the true clusters
    bad = good[[1, 0, 2]] * 0 + 0.1 * torch.randn(3, 120)  # nearly uniform, unrelated to the clusters
    mixed = good.clone()
    mixed[0] = mixed[1]                              # merges two clusters
    scores = [head_score(z.T, embed)[0] for z in (bad, mixed, good)]
    assert int(np.argmin(scores)) == 2, scores


def test_consistency_ratio_and_reliability_rule_paper_and_code_variants() -> None:
    labels = np.array([0, 0, 0, 1, 1, 0])
    neighbors = np.array([[1, 2], [0, 2], [0, 1], [4, 5], [3, 5], [3, 4]])
    ratio = consistency_ratio(neighbors, labels)
    assert ratio.tolist() == [1.0, 1.0, 1.0, 0.5, 0.5, 0.0]
    rng = np.random.default_rng(0)
    conf = np.array([0.999, 0.5, 0.999, 0.999, 0.999, 0.999])
    paper = reliable_mask(ratio, conf, labels, threshold=0.5, strict=True, min_confidence=0, balance=False, rng=rng)
    assert paper.tolist() == [True, True, True, False, False, False]  # r > lambda
    code = reliable_mask(ratio, conf, labels, threshold=0.5, strict=False, min_confidence=0.99, balance=False, rng=rng)
    assert code.tolist() == [True, False, True, True, True, False]   # r >= lambda and conf > 0.99
    # balance: with row 1 confident too, cluster 0 has 3 reliable rows (0, 1, 2) and cluster 1 has 2 (3, 4);
    # cluster 0 is cut at random to 2 of its 3, cluster 1 kept whole
    conf[1] = 0.999
    unbalanced = reliable_mask(ratio, conf, labels, threshold=0.5, strict=False, min_confidence=0.99, balance=False,
                               rng=rng)
    assert unbalanced.tolist() == [True, True, True, True, True, False]
    kept_of_zero = set()
    for seed in range(20):
        balanced = reliable_mask(ratio, conf, labels, threshold=0.5, strict=False, min_confidence=0.99, balance=True,
                                 rng=np.random.default_rng(seed))
        assert balanced.sum() == 4 and balanced[3] and balanced[4] and not balanced[5]
        assert balanced[:3].sum() == 2
        kept_of_zero.add(tuple(np.flatnonzero(balanced[:3]).tolist()))
    assert len(kept_of_zero) > 1  # a random cut, not always the same rows


def test_neighbours_include_self_only_when_asked() -> None:
    x = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]], dtype=np.float32)
    with_self = neighbours(x, 2, include_self=True)
    without = neighbours(x, 2, include_self=False)
    assert with_self[:, 0].tolist() == [0, 1, 2, 3]
    assert all(i not in row for i, row in enumerate(without))
    assert without[:, 0].tolist() == [1, 0, 3, 2]


class _Collect(Observer):
    def __init__(self) -> None:
        self.seen: list[tuple[str, int, dict]] = []

    def on_epoch_end(self, *, stage: str, epoch: int, metrics: dict, state: object) -> None:
        self.seen.append((stage, epoch, metrics))


def test_published_labels_are_scored_engine_side() -> None:
    collect = _Collect()
    bus = EventBus([collect])
    probe = PseudoLabelProbe(np.array([0, 0, 1, 1, 2, 2]), bus)
    bus.add(probe)
    # cluster ids permuted (2->class 0, 0->class 1, 1->class 2), one of four wrong
    bus.emit("on_pseudo_labels", stage="head_init", epoch=3, name="prototype_label",
             index=torch.tensor([0, 1, 2, 4]), labels=torch.tensor([2, 2, 0, 0]))
    assert collect.seen == [("head_init", 3, {"prototype_label_acc": 0.75, "prototype_label_count": 4.0})]
    assert probe.latest == {"head_init_prototype_label_acc": 0.75, "head_init_prototype_label_count": 4.0}

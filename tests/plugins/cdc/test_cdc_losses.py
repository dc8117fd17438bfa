"""CDC's calibration losses and the calibration plugin's gradient routing, on hand-computed cases."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from deepclust_cdc.calibration import CDCHeadCalibration
from deepclust_cdc.losses import minicluster_targets, negative_entropy, soft_cross_entropy
from toolkit.api.context import Batch
from toolkit.nn.heads import ClusterHead


def test_minicluster_targets_average_each_group() -> None:
    probs = torch.tensor([[0.8, 0.2], [0.4, 0.6], [1.0, 0.0]])
    labels = torch.tensor([0, 0, 2])  # mini-cluster 1 is empty: it must not break anything
    targets = minicluster_targets(probs, labels, 3)
    expected = torch.tensor([[0.6, 0.4], [0.6, 0.4], [1.0, 0.0]])
    assert torch.allclose(targets, expected)


def test_pure_confident_region_keeps_its_confidence() -> None:
    # Theorem 1's reliable region: identical predictions, target = prediction (no penalty)
    probs = torch.tensor([[0.97, 0.03]] * 4)
    assert torch.allclose(minicluster_targets(probs, torch.zeros(4, dtype=torch.long), 1), probs)


def test_soft_cross_entropy_by_hand() -> None:
    logits = torch.tensor([[0.0, math.log(3.0)]])  # softmax [0.25, 0.75]
    target = torch.tensor([[0.5, 0.5]])
    assert soft_cross_entropy(logits, target).item() == pytest.approx(-(0.5 * math.log(0.25) + 0.5 * math.log(0.75)))
    two = torch.tensor([[0.0, 0.0], [0.0, math.log(3.0)]])
    both = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert soft_cross_entropy(two, both).item() == pytest.approx((math.log(2) - math.log(0.75)) / 2)


def test_negative_entropy_by_hand() -> None:
    balanced = torch.tensor([[5.0, 0.0], [0.0, 5.0]])  # batch mean exactly [0.5, 0.5]
    assert negative_entropy(balanced).item() == pytest.approx(-math.log(2))
    assert negative_entropy(balanced, per_class_mean=True).item() == pytest.approx(-math.log(2) / 2)
    collapsed = torch.tensor([[30.0, 0.0], [30.0, 0.0]])
    assert negative_entropy(collapsed).item() == pytest.approx(0.0, abs=1e-6)


def _batch(backbone: nn.Module, head: nn.Module, raw: torch.Tensor) -> Batch:
    weak = raw + 0.01
    fw = backbone(weak)
    return Batch(positions=torch.arange(len(raw)), epoch=1, step=0, weak=weak, strong=weak, features_weak=fw,
                 features_strong=fw, logits_weak=head(fw), logits_strong=head(fw), _raw_fn=lambda: raw,
                 _encode_fn=backbone)


@pytest.mark.parametrize("stop_gradient", [True, False])
def test_calibration_loss_trains_only_the_calibration_head(stop_gradient: bool) -> None:
    torch.manual_seed(0)
    backbone, head = nn.Linear(6, 8), ClusterHead(8, 3, 16)
    plugin = CDCHeadCalibration(CDCHeadCalibration.Options(num_miniclusters=4, kmeans_nredo=1,
                                                           stop_gradient=stop_gradient))
    plugin.setup(SimpleNamespace(seed=0), head, 8)  # type: ignore[arg-type]
    cal = plugin.modules()["calibration_head"]
    assert cal is not head and all(torch.equal(a, b) for a, b in zip(cal.parameters(), head.parameters()))
    losses = plugin.loss(_batch(backbone, head, torch.randn(12, 6)))
    assert set(losses) == {"calibration", "entropy"}
    sum(losses.values()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in cal.parameters() if p.ndim > 1)
    assert all(p.grad is None for p in head.parameters())  # the clustering head gets nothing
    assert (backbone.weight.grad is None) == stop_gradient


def test_single_head_ablation_trains_the_clustering_head() -> None:
    torch.manual_seed(0)
    backbone, head = nn.Linear(6, 8), ClusterHead(8, 3, 16)
    plugin = CDCHeadCalibration(CDCHeadCalibration.Options(num_miniclusters=4, kmeans_nredo=1, single_head=True))
    plugin.setup(SimpleNamespace(seed=0), head, 8)  # type: ignore[arg-type]
    assert plugin.modules() == {}
    sum(plugin.loss(_batch(backbone, head, torch.randn(12, 6))).values()).backward()
    assert head.last.weight.grad is not None


def test_predict_uses_the_calibration_head_in_eval_mode() -> None:
    torch.manual_seed(0)
    head = ClusterHead(8, 3, 16)
    plugin = CDCHeadCalibration()
    plugin.setup(SimpleNamespace(seed=0), head, 8)  # type: ignore[arg-type]
    cal = plugin.modules()["calibration_head"]
    with torch.no_grad():
        cal.last.weight.add_(1.0)
    feats = torch.randn(5, 8)
    out = plugin.predict(feats, head(feats))
    cal.eval()
    assert torch.allclose(out, cal(feats).softmax(1)) and cal.training is False
    assert torch.allclose(out.sum(1), torch.ones(5))

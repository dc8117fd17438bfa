"""DRC's three losses against values worked out by hand (closed forms), and the head_init contract."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from deepclust_drc.head_init import FromPretrainHeadInit
from deepclust_drc.loss import af_loss, ap_loss, cr_loss, drc_loss
from toolkit.errors import PluginError

T = torch.tensor


def test_af_loss_cosine_rows_hand_computed() -> None:
    # Orthogonal unit rows, T = 0.5: similarities 2 (positive) and 0 (negative) -> log(1 + e^-2) per row.
    z = T([[1.0, 0.0], [0.0, 1.0]])
    assert af_loss(z, z, 0.5) == pytest.approx(math.log1p(math.exp(-2)), abs=1e-6)
    # Scaling a row changes nothing under cosine, but does under the literal dot product of Eq. 5.
    z2, zp = T([[2.0, 0.0], [0.0, 1.0]]), T([[1.0, 0.0], [0.0, 1.0]])
    assert af_loss(z2, zp, 1.0) == pytest.approx(math.log1p(math.exp(-1)), abs=1e-6)
    raw = (math.log1p(math.exp(-2)) + math.log1p(math.exp(-1))) / 2
    assert af_loss(z2, zp, 1.0, normalize=False) == pytest.approx(raw, abs=1e-6)


def test_af_loss_anchors_on_the_first_view_only() -> None:
    # Row 0's positive (0,1) is less similar to it than row 1's candidate (1,0): log(1 + e) for row 0,
    # log(1 + e^-1) for row 1 -> the mean; swapping the views gives another value (one direction).
    z, zp = T([[1.0, 0.0], [1.0, 0.0]]), T([[0.0, 1.0], [1.0, 0.0]])
    expected = (math.log1p(math.e) + math.log1p(math.exp(-1))) / 2
    assert af_loss(z, zp, 1.0) == pytest.approx(expected, abs=1e-6)
    assert af_loss(zp, z, 1.0) != pytest.approx(expected, abs=1e-3)


def test_af_loss_mask_removes_other_views_of_the_same_image() -> None:
    # Rows 0 and 2 are views of image 0; masked, rows 0 and 2 compete only with row 1 (log(1 + e^-1)),
    # row 1 (no other view of its image) with both: log(1 + 2 e^-1).
    z = T([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    zp = T([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    masked = af_loss(z, zp, 1.0, group=T([0, 1, 0]))
    assert masked == pytest.approx((2 * math.log1p(math.exp(-1)) + math.log1p(2 * math.exp(-1))) / 3, abs=1e-6)
    unmasked = (2 * math.log(1 + 1 + math.exp(-1)) + math.log1p(2 * math.exp(-1))) / 3
    assert af_loss(z, zp, 1.0) == pytest.approx(unmasked, abs=1e-6)


def test_ap_loss_columns_hand_computed() -> None:
    # Columns q1 = (1, 0, .5), q2 = (0, 1, .5): cosine 1 with itself, 0.25 / 1.25 = 0.2 with the other.
    p = T([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    assert ap_loss(p, p, 0.95) == pytest.approx(math.log1p(math.exp((0.2 - 1.0) / 0.95)), abs=1e-6)
    # Literal dot products: 1.25 and 0.25 -> log(1 + e^-1) at T = 1.
    assert ap_loss(p, p, 1.0, normalize=False) == pytest.approx(math.log1p(math.exp(-1)), abs=1e-6)


def test_ap_loss_floor_and_collapse_values() -> None:
    n, k = 512, 10
    hard = torch.eye(k).repeat(n // k + 1, 1)[:n]  # one-hot, balanced, view-consistent
    floor = math.log1p((k - 1) * math.exp(-1 / 0.95))
    assert ap_loss(hard, hard) == pytest.approx(floor, abs=1e-5) and floor == pytest.approx(1.421, abs=1e-3)
    collapsed = torch.zeros(n, k)
    collapsed[:, 0] = 1.0  # empty columns normalise to zero vectors: logit 0, no NaN
    expected = (math.log1p((k - 1) * math.exp(-1 / 0.95)) + (k - 1) * math.log(k)) / k
    assert ap_loss(collapsed, collapsed) == pytest.approx(expected, abs=1e-5)
    assert expected == pytest.approx(2.214, abs=1e-3)


def test_cluster_regulariser_hand_computed() -> None:
    p = T([[1.0, 0.0], [1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    assert cr_loss(p) == pytest.approx((2.5**2 + 1.5**2) / 4)
    assert cr_loss(torch.full((512, 10), 0.1)) == pytest.approx(51.2)  # balanced: N / K
    one = torch.zeros(512, 10)
    one[:, 3] = 1
    assert cr_loss(one) == pytest.approx(512.0)  # collapsed: N


def test_total_is_the_weighted_sum_and_both_views_get_gradients() -> None:
    torch.manual_seed(0)
    z = torch.randn(8, 3, requires_grad=True)
    zp = torch.randn(8, 3, requires_grad=True)
    total, parts = drc_loss(z, zp, cr_weight=0.005)
    with torch.no_grad():
        p, pp = z.softmax(1), zp.softmax(1)
        parts = {k: float(v) for k, v in parts.items()}
    assert parts["af"] == pytest.approx(float(af_loss(z.detach(), zp.detach(), 0.5)), abs=1e-6)
    assert parts["ap"] == pytest.approx(float(ap_loss(p, pp, 0.95)), abs=1e-6)
    assert parts["cr"] == pytest.approx(float(cr_loss(p)), abs=1e-6)
    assert float(total.detach()) == pytest.approx(parts["af"] + parts["ap"] + 0.005 * parts["cr"], abs=1e-6)
    total.backward()
    assert z.grad.abs().sum() > 0 and zp.grad.abs().sum() > 0  # no stop-gradient on either view
    only_ap, _ = drc_loss(z, zp, af_weight=0.0, cr_weight=0.0)
    assert float(only_ap.detach()) == pytest.approx(parts["ap"], abs=1e-6)


def test_from_pretrain_returns_the_head_or_fails_in_one_line() -> None:
    plugin = FromPretrainHeadInit()
    head = nn.Linear(4, 3)
    assert plugin.init_head(None, nn.Identity(), torch.zeros(2, 4), head) is head  # type: ignore[arg-type]
    with pytest.raises(PluginError, match="produced no clustering head"):
        plugin.init_head(None, nn.Identity(), torch.zeros(2, 4), None)  # type: ignore[arg-type]

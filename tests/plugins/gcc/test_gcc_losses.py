"""GCC's Stage II losses (Eqs. 9-11) against hand-computed golden values."""

from __future__ import annotations

import pytest
import torch

from deepclust_gcc.losses import gaussian_kernels, loss_cwm, loss_d, loss_ml, mmd_per_cluster

G = torch.tensor([[0.9, 0.1], [1, 0], [0, 1], [0.2, 0.8]], dtype=torch.float64)
R = torch.tensor([[1, 0], [0.8, 0.2], [0, 1], [0.1, 0.9]], dtype=torch.float64)
Y = torch.tensor([0, 0, 1, 1])


def test_ml_golden_values() -> None:
    assert loss_ml(torch.tensor([[1.0, 3, 2]]), torch.tensor([0])).item() == pytest.approx(5.0)
    two = torch.tensor([[1.0, 3, 2], [2, 0.5, -1]])
    assert loss_ml(two, torch.tensor([0, 0]), reduction="sum").item() == pytest.approx(5.0)
    assert loss_ml(two, torch.tensor([0, 0]), reduction="mean").item() == pytest.approx(2.5)


def test_ml_zero_when_condition_is_argmax_or_tied() -> None:
    assert loss_ml(torch.tensor([[3.0, 1, 2], [1.0, 1.0, 0.0]]), torch.tensor([0, 0])).item() == 0.0


def test_ml_gradient_lowers_winners_and_raises_target() -> None:
    p = torch.tensor([[1.0, 3, 2]], requires_grad=True)
    loss_ml(p, torch.tensor([0])).backward()
    assert p.grad[0, 0] < 0 and p.grad[0, 1] > 0 and p.grad[0, 2] > 0


def test_ml_on_probs_is_bounded() -> None:
    value = loss_ml(torch.tensor([[0.0, 10.0]]), torch.tensor([0]), on="probs").item()
    assert 0.0 < value <= 1.0


def test_cwm_golden_values() -> None:
    assert loss_cwm(G, Y).item() == pytest.approx(-0.815718138526036, abs=1e-12)
    assert loss_cwm(G, Y, exclude_diag=True).item() == pytest.approx(-0.8067246972307737, abs=1e-12)


def test_cwm_orthogonal_classes_give_minus_one() -> None:
    g = torch.tensor([[1.0, 0], [1.0, 0], [0, 2.0], [0, 2.0]], dtype=torch.float64)
    assert loss_cwm(g, Y).item() == pytest.approx(-1.0)


def test_cwm_single_class_skips_between_term() -> None:
    assert loss_cwm(G, torch.zeros(4, dtype=torch.long)).item() == pytest.approx(-float((torch.nn.functional.normalize(G) @ torch.nn.functional.normalize(G).T).mean()))


def _single_kernel(r: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    z = torch.cat([r, g])
    return torch.exp(-torch.cdist(z, z).pow(2) / 1.0)


def test_d_golden_value_single_gaussian() -> None:
    assert mmd_per_cluster(R, G, Y, Y, 2, _single_kernel(R, G)).item() == pytest.approx(0.019801326693244636, abs=1e-12)
    assert loss_d(R, G, Y, 2, kernel_num=1, bandwidth=1.0).item() == pytest.approx(0.019801326693244636, abs=1e-12)
    assert loss_d(G, G, Y, 2, kernel_num=1, bandwidth=1.0).item() == pytest.approx(0.0, abs=1e-12)


def test_d_invariant_to_permutation_within_class() -> None:
    perm = torch.tensor([1, 0, 3, 2])
    a = loss_d(R, G, Y, 2, kernel_num=1, bandwidth=1.0)
    b = loss_d(R[perm], G, Y[perm], 2, labels_fake=Y, kernel_num=1, bandwidth=1.0)
    assert a.item() == pytest.approx(b.item(), abs=1e-12)


def test_d_skips_a_class_missing_from_one_batch() -> None:
    only0 = torch.tensor([0, 0, 0, 0])
    value = mmd_per_cluster(R, G, Y, only0, 3, _single_kernel(R, G))
    # class 1 has no generated samples, class 2 none at all: only class 0 counts
    r0 = R[:2]
    k = _single_kernel(r0, G)
    expected = k[:2, :2].mean() + k[2:, 2:].mean() - 2 * k[:2, 2:].mean()
    assert value.item() == pytest.approx(expected.item(), abs=1e-12)


def test_d_gradients_reach_both_batches() -> None:
    r = R.clone().requires_grad_(True)
    g = G.clone().requires_grad_(True)
    loss_d(r, g, Y, 2).backward()
    assert r.grad.abs().sum() > 0 and g.grad.abs().sum() > 0


def test_multi_kernel_sum_and_mean() -> None:
    k_sum = gaussian_kernels(R, G, kernel_num=5)
    k_mean = gaussian_kernels(R, G, kernel_num=5, reduce="mean")
    assert torch.allclose(k_sum / 5, k_mean)
    assert torch.allclose(torch.diagonal(k_sum), torch.full((8,), 5.0, dtype=torch.float64))

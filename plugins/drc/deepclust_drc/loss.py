"""The three DRC losses (Eqs. 5, 8, 9, 10) as pure functions of two views' logits.

All are computed in fp32 with `cross_entropy` on similarity logits (never exp/ratio), so large
logits cannot overflow. Row r of `z` is paired with row r of `zp` (the caller tiles the original view).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def af_loss(z: torch.Tensor, zp: torch.Tensor, temperature: float = 0.5, normalize: bool = True,
            group: torch.Tensor | None = None) -> torch.Tensor:
    """Assignment-feature loss (Eq. 5): InfoNCE over rows, anchors from `z`, candidates from `zp`.

    `normalize` uses cosine similarity (Eq. 5 prints a raw dot product of the unbounded logits); `group`
    (sample ids per row, optional) removes other views of the same image from the denominator (Eq. 5 keeps
    them; off by default).
    """
    a, b = z.float(), zp.float()
    if normalize:
        a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    sim = a @ b.t() / temperature
    n = sim.shape[0]
    if group is not None:
        same = group.view(-1, 1) == group.view(1, -1)
        same.fill_diagonal_(False)
        sim = sim.masked_fill(same, float("-inf"))
    return F.cross_entropy(sim, torch.arange(n, device=sim.device))


def ap_loss(p: torch.Tensor, pp: torch.Tensor, temperature: float = 0.95, normalize: bool = True) -> torch.Tensor:
    """Assignment-probability loss (Eq. 8): InfoNCE over the K cluster columns of the N x K matrices."""
    qa, qb = p.float(), pp.float()
    if normalize:
        qa, qb = F.normalize(qa, dim=0), F.normalize(qb, dim=0)
    sim = qa.t() @ qb / temperature
    return F.cross_entropy(sim, torch.arange(sim.shape[0], device=sim.device))


def cr_loss(p: torch.Tensor) -> torch.Tensor:
    """Cluster-size regulariser (Eq. 9): squared column sums over N; N/K when balanced, N when collapsed."""
    p = p.float()
    return p.sum(dim=0).pow(2).sum() / p.shape[0]


def drc_loss(z: torch.Tensor, zp: torch.Tensor, *, t_af: float = 0.5, t_ap: float = 0.95, cr_weight: float = 0.005,
             af_weight: float = 1.0, ap_weight: float = 1.0, af_normalize: bool = True, ap_normalize: bool = True,
             symmetric: bool = False, group: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total objective (Eq. 10) and its unweighted parts; `symmetric` averages both anchor directions."""
    p, pp = z.float().softmax(dim=1), zp.float().softmax(dim=1)
    af = af_loss(z, zp, t_af, af_normalize, group)
    ap = ap_loss(p, pp, t_ap, ap_normalize)
    if symmetric:
        af = (af + af_loss(zp, z, t_af, af_normalize, group)) / 2
        ap = (ap + ap_loss(pp, p, t_ap, ap_normalize)) / 2
    cr = cr_loss(p)
    total = af_weight * af + ap_weight * ap + cr_weight * cr
    return total, {"af": af, "ap": ap, "cr": cr}

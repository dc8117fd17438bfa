"""CDC's per-class dynamic quota (arXiv:2403.02998 Eqs. 5-6, in the released code's form): a class keeps
as many of its top candidates as its mean calibrated confidence allows,
M_c = floor(mean conf of top-M candidates x M)."""

from __future__ import annotations

import math
from typing import Literal

import torch

Ranking = Literal["class_prob", "argmax"]


def quota_select(probs: torch.Tensor, per_class: int, ranking: Ranking = "class_prob",
                 require_argmax: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows chosen by the quota rule and their pseudo-labels (the argmax of `probs`).

    ranking='class_prob' (released code): class c's candidates are the `per_class` rows with the
    largest p[:, c] in the whole batch. ranking='argmax' (paper-literal): the most confident rows whose
    argmax is c. `require_argmax` additionally drops candidates whose argmax is not c.
    A row that is a kept candidate of several classes is selected once.
    """
    conf, pseudo = probs.max(dim=1)
    rows, classes = probs.shape
    m = min(per_class, rows)
    selected = torch.zeros(rows, dtype=torch.bool, device=probs.device)
    if m <= 0:
        return selected.nonzero(as_tuple=True)[0], pseudo[:0]
    for c in range(classes):
        if ranking == "class_prob":
            top = probs[:, c].topk(m).indices
        else:
            members = (pseudo == c).nonzero(as_tuple=True)[0]
            top = members[conf[members].argsort(descending=True)[:m]]
        if len(top) == 0:
            continue
        quota = math.floor(float(conf[top].mean()) * m + 1e-6)  # epsilon: 0.7 * 10 must give 7
        keep = top[:quota]
        if require_argmax:
            keep = keep[pseudo[keep] == c]
        selected[keep] = True
    index = selected.nonzero(as_tuple=True)[0]
    return index, pseudo[index]

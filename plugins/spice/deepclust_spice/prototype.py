"""SPICE stage 2 building blocks: prototype pseudo-labels (E-step, Eqs. 2-4), the double-softmax
cross-entropy (M-step, Eq. 5) and the label-free head score used to keep the best head."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def prototype_labels(features: torch.Tensor, probs: torch.Tensor, per_cluster: int, center_ratio: float = 0.5,
                     overlap: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(row index, label) pairs of one E-batch.

    `features` [M, D] are L2-normalised embeddings, `probs` [M, K] the head's probabilities. For each
    cluster the floor(`center_ratio * per_cluster`) most confident rows (at least one) give a prototype (their
    mean feature); the `per_cluster` rows most similar to it get the cluster's label. With `overlap`
    (the paper's default) clusters choose independently, so a row may appear twice with two labels;
    otherwise clusters are filled greedily in order and each row gets at most one label.
    """
    m, k = probs.shape
    if per_cluster < 1 or per_cluster * k > m:
        raise ValueError(f"per_cluster={per_cluster} needs 1 <= per_cluster * K <= M (K={k}, M={m})")
    n_center = max(1, int(center_ratio * per_cluster))
    top = probs.topk(n_center, dim=0).indices                     # [n_center, K]   Eq. (2)
    prototypes = features[top].mean(dim=0)                          # [K, D]          Eq. (3)
    sim = prototypes @ features.T                                   # [K, M] cosine up to a per-row scale
    if overlap:
        index = sim.topk(per_cluster, dim=1).indices                # [K, per_cluster]  Eq. (4)
    else:
        taken = torch.zeros(m, dtype=torch.bool, device=sim.device)
        rows = []
        for c in range(k):
            chosen = sim[c].masked_fill(taken, float("-inf")).topk(per_cluster).indices
            taken[chosen] = True
            rows.append(chosen)
        index = torch.stack(rows)
    labels = torch.arange(k, device=index.device).repeat_interleave(per_cluster)
    return index.flatten(), labels


def double_softmax_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Eq. (5): cross-entropy on the head's *probabilities* (a second softmax), which slows learning on
    low-probability targets. Intentional; do not replace by plain CE on the logits (Table VII)."""
    return F.cross_entropy(logits.float().softmax(dim=1), labels)


def entropy_penalty(logits: torch.Tensor) -> torch.Tensor:
    """sum_k pbar_k log pbar_k of the batch-mean prediction (negative entropy: minimising it spreads
    samples over clusters; the released code's regulariser, needed for K = 200)."""
    mean = logits.float().softmax(dim=1).mean(dim=0)
    return (mean * mean.clamp_min(1e-12).log()).sum()


@torch.no_grad()
def head_score(logits: torch.Tensor, features: torch.Tensor, center_ratio: float = 0.5,
               overlap: bool = True) -> tuple[float, torch.Tensor, torch.Tensor]:
    """Label-free quality of one head over the whole data set (M = N, un-augmented): prototype labels
    from its own predictions, then their double-softmax loss. Lower is better. Returns (loss, index, labels)."""
    k = logits.shape[1]
    index, labels = prototype_labels(features, logits.float().softmax(dim=1), len(features) // k, center_ratio, overlap)
    return float(double_softmax_ce(logits[index], labels)), index, labels

"""Cluster head: features -> K cluster logits, linear or CDC's one-hidden-layer shape."""

from __future__ import annotations

import torch
from torch import nn


class ClusterHead(nn.Module):
    """Linear(in, K), or Linear(in, H)-BN-ReLU-Linear(H, K) when ``hidden_dim`` is given.

    ``first`` and ``last`` name the Linear layers so head-initialisation plugins can set their
    weights (for the linear shape they are the same layer).
    """

    def __init__(self, in_dim: int, num_clusters: int, hidden_dim: int | None = None):
        super().__init__()
        if hidden_dim is None:
            self.net = nn.Sequential(nn.Linear(in_dim, num_clusters))
        else:
            self.net = nn.Sequential(
                nn.Linear(in_dim, hidden_dim),
                nn.BatchNorm1d(hidden_dim),
                nn.ReLU(inplace=True),
                nn.Linear(hidden_dim, num_clusters),
            )
        self.in_dim, self.num_clusters, self.hidden_dim = in_dim, num_clusters, hidden_dim

    @property
    def first(self) -> nn.Linear:
        return self.net[0]

    @property
    def last(self) -> nn.Linear:
        return self.net[-1]

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)

"""The round's pool of generated images and label-matched draws from it.

GCC (Section 3.3.1) pairs every real image of a batch with one image generated for the real image's
pseudo-label; a pool generated once per round with the frozen generator keeps that pairing without
running the sampler at every step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def pool_counts(labels: torch.Tensor, num_clusters: int, size: int, min_per_class: int) -> torch.Tensor:
    """Images to generate per cluster: proportional to the pseudo-label histogram, at least
    `min_per_class` for every non-empty cluster, none for empty ones (no data to condition on)."""
    hist = torch.bincount(labels.cpu(), minlength=num_clusters)[:num_clusters].double()
    if hist.sum() == 0:
        return torch.zeros(num_clusters, dtype=torch.long)
    counts = torch.floor(hist / hist.sum() * size).long()
    counts = torch.where(hist > 0, counts.clamp_min(min_per_class), torch.zeros_like(counts))
    return counts


@dataclass
class Pool:
    """Generated uint8 images sorted by the cluster they were conditioned on."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        order = torch.argsort(self.labels, stable=True)
        self.images, self.labels = self.images[order], self.labels[order]
        k = int(self.labels.max()) + 1 if len(self.labels) else 0
        self.counts = torch.bincount(self.labels, minlength=k)
        self.offsets = torch.cumsum(self.counts, 0) - self.counts

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def draw(self, wanted: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """One pool image per wanted label (with replacement); returns (rows of `wanted` served, images).

        Labels the pool has no image for are skipped.
        """
        device = self.labels.device
        wanted = wanted.to(device)
        k = len(self.counts)
        known = wanted < k
        counts = torch.zeros_like(wanted)
        counts[known] = self.counts[wanted[known]]
        served = torch.nonzero(counts > 0).flatten()
        if len(served) == 0:
            return served, self.images[:0]
        u = torch.rand(len(served), generator=generator).to(device)
        pick = self.offsets[wanted[served]] + (u * counts[served]).long().clamp_max(counts[served] - 1)
        return served, self.images[pick]

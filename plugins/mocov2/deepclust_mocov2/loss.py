"""MoCo's InfoNCE: one positive key per query, negatives from a queue of past keys."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def moco_infonce(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float) -> torch.Tensor:
    """Cross-entropy with the positive logit q.k first, then q against every queued key ([Q, D])."""
    q = F.normalize(q.float(), dim=1)
    k = F.normalize(k.float(), dim=1)
    pos = (q * k).sum(dim=1, keepdim=True)
    neg = q @ queue.t()
    logits = torch.cat([pos, neg], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))


class KeyQueue:
    """A fixed-size FIFO of L2-normalised keys (the MoCo dictionary), initialised with random unit vectors."""

    def __init__(self, size: int, dim: int, device: torch.device, generator: torch.Generator) -> None:
        self.keys = F.normalize(torch.randn(size, dim, generator=generator), dim=1).to(device)
        self.ptr = 0

    @torch.no_grad()
    def push(self, keys: torch.Tensor) -> None:
        keys = F.normalize(keys.detach().float(), dim=1)[: len(self.keys)]
        n = len(keys)
        idx = (torch.arange(n, device=keys.device) + self.ptr) % len(self.keys)
        self.keys[idx] = keys
        self.ptr = (self.ptr + n) % len(self.keys)

    def state_dict(self) -> dict[str, torch.Tensor | int]:
        """The queued keys and write position, for resume points."""
        return {"keys": self.keys.cpu(), "ptr": self.ptr}

    def load_state_dict(self, state: dict[str, torch.Tensor | int]) -> None:
        keys = state["keys"]
        assert isinstance(keys, torch.Tensor)
        self.keys.copy_(keys.to(self.keys.device))
        self.ptr = int(state["ptr"])

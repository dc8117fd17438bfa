"""Data-parallel self-labeling: what the engine does differently when a torch process group is running.

Used by `toolkit tune` trials with `[tune.resources] workers > 1` (Ray Train starts the processes and the
process group). Every rank runs the whole recipe (pretraining, head-init and evaluation replicated from
the same seed); only the self-labeling loop is split: each rank trains on its slice of every batch of the
shared seeded permutation, backbone and head are wrapped in DistributedDataParallel, plugin modules
(which plugins call themselves, so they cannot be swapped for a wrapper) get the same gradient averaging
explicitly, and the epoch's figures are summed over ranks. Only rank 0 writes files or tracks.

Nothing here runs without an initialised process group of more than one rank: the single-process path
stays exactly as it was.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of the running process group; (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    """Whether this process may write files, checkpoints and tracking (rank 0, or no process group)."""
    return rank_and_world()[0] == 0


def shard_index(index: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """This rank's contiguous slice of one batch of the shared permutation: slices are disjoint, cover the
    batch, and differ in size by at most one row, so the ranks' gradient average is the batch's."""
    return index.tensor_split(world)[rank]


def _trainable(modules: Iterable[nn.Module]) -> list[nn.Parameter]:
    return [p for m in modules for p in m.parameters() if p.requires_grad]


@dataclass
class DataParallel:
    """One rank's share of data-parallel training. Build with `start()` (None in a single process)."""

    rank: int
    world: int
    device: torch.device
    _extra: list[nn.Parameter] = field(default_factory=list, repr=False)
    _modules: list[nn.Module] = field(default_factory=list, repr=False)  # whose buffers follow rank 0
    _seen: list[torch.Tensor] = field(default_factory=list, repr=False)

    @classmethod
    def start(cls, device: torch.device) -> "DataParallel | None":
        rank, world = rank_and_world()
        return cls(rank, world, device) if world > 1 else None

    # ---------------------------------------------------------------------------------- set-up
    def broadcast(self, modules: Iterable[nn.Module]) -> None:
        """Copy rank 0's parameters and buffers to every rank (replicated set-up may still differ on GPUs)."""
        for module in modules:
            for tensor in [*module.parameters(), *module.buffers()]:
                dist.broadcast(tensor.data, src=0)

    def wrap(self, module: nn.Module) -> nn.Module | None:
        """`module` in DistributedDataParallel (which starts every rank from rank 0's weights and averages
        gradients in backward); None, after copying rank 0's weights, if it has nothing to train."""
        self._modules.append(module)
        if not _trainable([module]):
            self.broadcast([module])
            return None
        ids = [self.device.index if self.device.index is not None else 0] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids)  # buffers: rank 0's at every forward

    def share_plugin_modules(self, modules: Iterable[nn.Module]) -> None:
        """Plugin modules: start from rank 0's weights; their gradients are averaged in `sync_gradients`."""
        modules = list(modules)
        self.broadcast(modules)
        self._modules.extend(modules)
        self._extra = _trainable(modules)

    # ---------------------------------------------------------------------------------- per step
    def shard(self, index: torch.Tensor) -> torch.Tensor:
        mine = shard_index(index, self.rank, self.world)
        self._seen.append(mine.detach().cpu())
        return mine

    def gather_rows(self, rows: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, slice]:
        """Every rank's rows of one batch of `batch_size` rows, in rank order (so: the batch as one process
        would see it), and the slice that is this rank's shard. For plugins that compute over the whole batch
        what the paper computes over it (CDC's mini-cluster k-means and per-class quotas); no gradient."""
        sizes = [len(part) for part in torch.arange(batch_size).tensor_split(self.world)]
        if rows.shape[0] != sizes[self.rank]:
            raise ValueError(f"rank {self.rank} holds {rows.shape[0]} rows of a {batch_size}-row batch; its shard "
                             f"has {sizes[self.rank]}")
        width = max(sizes)
        padded = rows.detach().new_zeros((width, *rows.shape[1:]))
        padded[:len(rows)] = rows.detach()
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded)
        start = sum(sizes[:self.rank])
        return torch.cat([part[:size] for part, size in zip(parts, sizes)]), slice(start, start + sizes[self.rank])

    def sync_gradients(self) -> None:
        """Average the gradients DDP does not handle (plugin modules), as DDP does for backbone and head.
        A parameter without a gradient on this rank counts as zero, so every rank sends the same layout."""
        if not self._extra:
            return
        for p in self._extra:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        grads = [p.grad for p in self._extra]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    # ---------------------------------------------------------------------------------- per epoch
    def sync_buffers(self) -> None:
        """Rank 0's buffers (BatchNorm running statistics) everywhere before evaluation: each rank's last
        training forward updated them from its own shard, so eval-mode predictions would differ."""
        for module in self._modules:
            for buffer in module.buffers():
                dist.broadcast(buffer.data, src=0)

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum over ranks, in place (gloo wants the tensor on the CPU for CPU groups)."""
        dist.all_reduce(tensor)
        return tensor

    def epoch_checks(self, params: Iterable[torch.Tensor], epoch_size: int) -> dict[str, float]:
        """Health figures of an epoch: rows two ranks both trained on (0), fraction of the epoch's rows covered,
        and the largest difference between ranks' parameter sums (0 when the replicas stayed identical)."""
        seen = torch.cat(self._seen) if self._seen else torch.empty(0, dtype=torch.long)
        self._seen = []
        counts = torch.bincount(seen.long(), minlength=epoch_size).to(self.device, torch.float32)
        self.sum_(counts)
        checksum = torch.stack([p.detach().double().sum() for p in params]).sum().float()
        sums = [torch.zeros_like(checksum.reshape(1)) for _ in range(self.world)]
        dist.all_gather(sums, checksum.reshape(1))
        spread = torch.cat(sums)
        return {"ddp_world_size": float(self.world), "ddp_rows_overlap": float((counts > 1).sum()),
                "ddp_rows_covered": float((counts > 0).float().mean()) if epoch_size else 0.0,
                "ddp_weight_spread": float(spread.max() - spread.min()),
                "ddp_weight_checksum": float(checksum)}

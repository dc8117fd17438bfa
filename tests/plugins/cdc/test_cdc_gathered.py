"""CDC under data parallel: two gloo ranks, each holding half of a batch, compute the same mini-cluster targets
and per-class quotas as one process holding the whole batch (the paper computes both over the batch of B)."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from deepclust_cdc.calibration import CDCHeadCalibration
from deepclust_cdc.selection import CalibratedSelection
from toolkit.api.context import Batch
from toolkit.nn.heads import ClusterHead
from toolkit.run.parallel import DataParallel

B, DIM, C, K = 64, 6, 4, 40  # K = 40 mini-clusters: more than one rank's 32 rows, so a shard alone cannot match


def _models() -> tuple[nn.Module, nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    backbone, head = nn.Linear(DIM, 8), ClusterHead(8, C, 16)
    head.eval()  # per-row predictions: BatchNorm batch statistics would differ between a shard and the batch
    return backbone, head, torch.randn(B, DIM)


def _batch(backbone: nn.Module, raw: torch.Tensor, gather=None) -> Batch:  # type: ignore[no-untyped-def]
    with torch.no_grad():
        f = backbone(raw)
    return Batch(positions=torch.arange(len(raw)), epoch=1, step=3, weak=raw, strong=raw, features_weak=f,
                 features_strong=f, logits_weak=f, logits_strong=f, _raw_fn=lambda: raw, _encode_fn=backbone,
                 _gather_fn=gather)


def _compute(batch: Batch, head: nn.Module) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mini-cluster targets, selected rows, their labels) of the CDC plugins on `batch`."""
    cal = CDCHeadCalibration(CDCHeadCalibration.Options(num_miniclusters=K, kmeans_nredo=2, kmeans_niter=10))
    cal.setup(SimpleNamespace(seed=5), head, 8)  # type: ignore[arg-type]
    targets = cal._targets(batch)
    confidence = head(batch.features_weak).softmax(1).detach()
    sel = CalibratedSelection().select(batch, confidence)
    return targets, sel.rows, sel.labels


def _rank(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        backbone, head, raw = _models()
        par = DataParallel(rank, 2, torch.device("cpu"))
        mine = raw.tensor_split(2)[rank]
        gathered = _compute(_batch(backbone, mine, lambda x: par.gather_rows(x, B)), head)
        alone = _compute(_batch(backbone, mine), head)
        torch.save({"gathered": gathered, "alone": alone}, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_ranks_compute_what_one_process_computes(tmp_path: Path) -> None:
    mp.start_processes(_rank, args=(_free_port(), str(tmp_path)), nprocs=2, join=True, start_method="spawn")
    backbone, head, raw = _models()
    targets, rows, labels = _compute(_batch(backbone, raw), head)
    assert len(rows) > 0
    got = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    half = B // 2
    for r, result in enumerate(got):
        g_targets, g_rows, g_labels = result["gathered"]
        own = slice(r * half, (r + 1) * half)
        assert torch.allclose(g_targets, targets[own], atol=1e-6)
        in_own = (rows >= own.start) & (rows < own.stop)
        assert torch.equal(g_rows + own.start, rows[in_own]) and torch.equal(g_labels, labels[in_own])
    # a rank computing on its shard alone (the old behaviour: K and M of half a batch) does not match
    lone = torch.cat([result["alone"][0] for result in got])
    assert not torch.allclose(lone, targets, atol=1e-3)

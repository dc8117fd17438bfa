"""Two ranks on two GPUs with NCCL: one tiny data-parallel `toolkit` run (the engine's DDP path), checked for
replicas that stay identical. Part of benchmarks/gpu/check.py; needs two CUDA devices."""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

ROOT = Path(__file__).resolve().parents[2]
TINY = ['data.dataset="synthetic"', "data.num_samples=2048", "data.num_classes=4", "data.synthetic_size=32",
        'pretrain.method="none"', 'head_init.method="random"', "train.epochs=2", "train.batch_size=256",
        'model.backbone="resnet18"', 'experiment.device="cuda"', "selection.threshold=0.01"]


def _rank(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", rank=rank, world_size=2)
    try:
        from toolkit.recipe.loading import load_recipe
        from toolkit.run.engine import Engine

        summary = Engine(load_recipe(ROOT / "recipes" / "baseline_digits.toml", TINY), Path(out) / "run",
                         device=f"cuda:{rank}").run()
        Path(out, f"rank{rank}.json").write_text(json.dumps({k: v for k, v in summary.items()
                                                            if isinstance(v, (int, float))}))
    finally:
        dist.destroy_process_group()


def main() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tempfile.mkdtemp(prefix="nccl-")
    mp.start_processes(_rank, args=(port, out), nprocs=2, join=True, start_method="spawn")
    ranks = [json.loads(Path(out, f"rank{r}.json").read_text()) for r in range(2)]
    spread = ranks[0].get("ddp_weight_spread")
    same = ranks[0].get("ddp_weight_checksum") == ranks[1].get("ddp_weight_checksum")
    print(f"2 ranks: world {ranks[0].get('ddp_world_size')}, weight spread {spread}, checksums equal {same}, "
          f"rows overlap {ranks[0].get('ddp_rows_overlap')}")
    return 0 if same and spread == 0.0 else 1


if __name__ == "__main__":
    sys.exit(main())

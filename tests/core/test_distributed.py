"""Data-parallel pieces without Ray: batch sharding, and two gloo ranks training one tiny run in step.

The two-rank run uses torch.multiprocessing on the CPU (no Ray), so a failure here points at the engine
(toolkit/distributed.py, loop.py, engine.py) rather than at Ray Train.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from toolkit.run.parallel import rank_and_world, shard_index

from conftest import RECIPES

TINY = ['data.dataset="synthetic"', "data.num_samples=240", "data.num_classes=3", "data.synthetic_size=8",
        "data.synthetic_channels=1", 'pretrain.method="none"', 'head_init.method="random"', "train.epochs=2",
        "train.batch_size=64", "model.hidden_dims=[16]", 'experiment.device="cpu"']
RECIPES_UNDER_TEST = {  # baseline: no plugin modules; CDC: a calibration head, whose gradients we average ourselves
    "baseline": ("baseline_digits.toml", ["selection.threshold=0.01"]),
    "cdc": ("cdc_digits.toml", ["model.head_hidden_dim=16", "calibration.num_miniclusters=8",
                                "calibration.kmeans_nredo=1", "calibration.kmeans_niter=5"]),
}


@pytest.mark.parametrize("n, world", [(64, 2), (63, 2), (10, 3), (5, 4)])
def test_shards_are_disjoint_and_cover_the_batch(n: int, world: int) -> None:
    batch = torch.randperm(1000, generator=torch.Generator().manual_seed(n))[:n]
    shards = [shard_index(batch, r, world) for r in range(world)]
    assert torch.equal(torch.cat(shards), batch)  # together: the batch, in order, each row once
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1
    for a in range(world):
        for b in range(a + 1, world):
            assert not set(shards[a].tolist()) & set(shards[b].tolist())


def test_single_process_has_no_world() -> None:
    assert rank_and_world() == (0, 1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rank(rank: int, world: int, port: int, out: str, result: str, recipe: str, overrides: list[str]) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        from toolkit.run.engine import Engine
        from toolkit.recipe.loading import load_recipe

        seen: list[list[int]] = []
        import toolkit.run.parallel as d

        original = d.DataParallel.shard

        def spy(self: d.DataParallel, index: torch.Tensor) -> torch.Tensor:
            mine = original(self, index)
            seen.append(mine.tolist())
            return mine

        d.DataParallel.shard = spy  # type: ignore[method-assign]
        summary = Engine(load_recipe(RECIPES / recipe, TINY + overrides), out).run()
        Path(result, f"rank{rank}.json").write_text(json.dumps({
            "seen": seen, "summary": {k: v for k, v in summary.items() if isinstance(v, (int, float))}}))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("name", sorted(RECIPES_UNDER_TEST))
def test_two_gloo_ranks_train_disjoint_shards_in_step(tmp_path: Path, name: str) -> None:
    out, result = tmp_path / "run", tmp_path / "result"
    result.mkdir()
    recipe, overrides = RECIPES_UNDER_TEST[name]
    mp.start_processes(_rank, args=(2, _free_port(), str(out), str(result), recipe, overrides), nprocs=2, join=True,
                       start_method="spawn")
    ranks = [json.loads((result / f"rank{r}.json").read_text()) for r in range(2)]
    steps = [len(r["seen"]) for r in ranks]
    assert steps[0] == steps[1] == 2 * (240 // 64)  # two epochs, drop_last, same number of steps
    for a, b in zip(ranks[0]["seen"], ranks[1]["seen"]):
        assert len(a) == len(b) == 32 and not set(a) & set(b)  # each step: two halves of one batch
    per_epoch = len(ranks[0]["seen"]) // 2
    epoch1 = {i for r in ranks for step in r["seen"][:per_epoch] for i in step}
    assert len(epoch1) == 240 // 64 * 64
    s0, s1 = ranks[0]["summary"], ranks[1]["summary"]
    assert s0["ddp_world_size"] == 2 and s0["ddp_rows_overlap"] == 0
    assert s0["ddp_rows_covered"] == pytest.approx(192 / 240)
    assert s0["ddp_weight_spread"] == 0.0 and s0["ddp_weight_checksum"] == s1["ddp_weight_checksum"]
    assert s0["acc"] == s1["acc"] and s0["loss"] == pytest.approx(s1["loss"])  # figures summed over ranks
    # Only rank 0 wrote the run folder (rank 1 would have raced it): one summary, one checkpoint.
    assert json.loads((out / "summary.json").read_text())["ddp_weight_checksum"] == s0["ddp_weight_checksum"]
    assert (out / "checkpoints" / "last.pt").is_file()

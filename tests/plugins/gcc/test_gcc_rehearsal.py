"""GCC under a rehearsal ([train] max_steps = 1): its own stages (generator pre-training and fine-tunes) are cut
like the engine's, its pool sampling runs one chunk and one denoising step, and the pool keeps its full size."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

import deepclust_gcc.ddpm as ddpm_module
import deepclust_gcc.plugin as gcc_plugin
from toolkit.recipe.loading import load_recipe
from toolkit.run.engine import Engine

from conftest import RECIPES

TINY = ["data.dataset=synthetic", "data.num_samples=160", "data.num_classes=4", "data.synthetic_size=8",
        "pretrain.method=none", "model.hidden_dims=[32]", "model.head_hidden_dim=32", "head_init.epochs=3",
        "head_init.nredo=1", "generation.timesteps=50", "generation.pretrain_epochs=5", "generation.finetune_epochs=3",
        "generation.round_epochs=1", "generation.sample_steps=5", "generation.pool_size=32",
        "generation.sample_batch_size=8", "generation.pool_min_per_class=4", "generation.batch_size=32",
        "generation.warmup_steps=0", "generation.grid_per_cluster=0", "train.epochs=4", "train.batch_size=32",
        "train.max_steps=1"]


def test_gcc_stages_and_sampling_are_cut_by_the_cap(tmp_path: Path, mlflow_store: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    denoising_calls, pools = [0], []
    real_sample, real_generate = ddpm_module.sample, gcc_plugin.ConditionalDDPMGeneration._generate_pool

    def counted_sample(eps_fn: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        def eps(*a: Any) -> torch.Tensor:
            denoising_calls[0] += 1
            return eps_fn(*a)
        return real_sample(eps, *args, **kwargs)

    def kept_pool(self: Any, *args: Any, **kwargs: Any) -> Any:
        pool = real_generate(self, *args, **kwargs)
        pools.append(len(pool))
        return pool

    monkeypatch.setattr(ddpm_module, "sample", counted_sample)
    monkeypatch.setattr(gcc_plugin.ConditionalDDPMGeneration, "_generate_pool", kept_pool)
    Engine(load_recipe(RECIPES / "gcc_digits.toml", TINY), tmp_path / "run", device="cpu").run()
    stages = {s["name"]: s for s in json.loads((tmp_path / "run" / "rehearsal.json").read_text())["stages"]}
    pretrain = stages["generator_pretrain"]
    assert (pretrain["epochs"], pretrain["epochs_run"], len(pretrain["step_seconds"])) == (5, 2, 2)
    assert pretrain["steps_per_epoch"] == 160 // 32
    assert (stages["generator_round1"]["epochs"], stages["generator_round1"]["epochs_run"]) == (3, 2)
    assert stages["self_label"]["epochs_run"] == 2 and "generator_round2" not in stages  # 2 epochs: rounds 0, 1
    assert len(pools) == 2 and min(pools) >= 32  # the pool keeps its full size (rows repeated) ...
    assert denoising_calls[0] == 2  # ... but each of the two took one chunk of 8 and one of 5 denoising steps
    sampling = stages["generator_sampling"]
    assert sampling["times_run"] == 2 and sampling["pass_projected"] > 5 * sampling["pass_seconds"]

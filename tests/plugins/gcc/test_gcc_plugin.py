"""GCC end to end on tiny synthetic data: rounds, losses, fidelity and grids in MLflow, exact resume
inside generator training and between rounds, and the generator added to another method's recipe."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import RECIPES, toolkit_env
from toolkit.files import load_safe

TINY = ["data.dataset=synthetic", "data.num_samples=160", "data.num_classes=4", "data.synthetic_size=8",
        "pretrain.method=none", "model.hidden_dims=[32]", "model.head_hidden_dim=32", "head_init.epochs=2",
        "head_init.nredo=1", "generation.timesteps=50", "generation.pretrain_epochs=3", "generation.finetune_epochs=1",
        "generation.round_epochs=1", "generation.sample_steps=5", "generation.pool_size=32",
        "generation.pool_min_per_class=4", "generation.batch_size=32", "generation.warmup_steps=0",
        "generation.grid_per_cluster=4", "train.epochs=2", "train.batch_size=32"]


def _run(out: Path, settings: list[str], observers: list | None = None, resume: bool = False) -> dict:
    from toolkit.run.engine import Engine
    from toolkit.recipe.loading import load_recipe
    from toolkit.track.tracker import MlflowTracker

    recipe = load_recipe(RECIPES / "gcc_digits.toml", settings)
    return Engine(recipe, out, device="cpu", observers=[MlflowTracker(), *(observers or [])], resume=resume).run()


def test_gcc_rounds_log_losses_fidelity_and_grids(tmp_path: Path, mlflow_store: str) -> None:
    from mlflow.tracking import MlflowClient

    summary = _run(tmp_path / "run", TINY)
    for term in ("loss_gcc_d", "loss_gcc_cwm", "loss_gcc_ml"):
        assert math.isfinite(summary[term]), term
    assert summary["loss_gcc_d"] >= 0 and -2 <= summary["loss_gcc_cwm"] <= 2
    client = MlflowClient(mlflow_store)
    run_id = summary["mlflow_run_id"]
    fidelity = client.get_metric_history(run_id, "generation_fidelity")
    assert [m.step for m in fidelity] == [0, 1]  # one pool per round (rounds start at epochs 1 and 2)
    assert all(0.0 <= m.value <= 1.0 for m in fidelity)
    assert [m.step for m in client.get_metric_history(run_id, "generator_pretrain_loss_ddpm")] == [1, 2, 3]
    assert [m.step for m in client.get_metric_history(run_id, "generator_round1_loss_ddpm")] == [1]
    grids = sorted(a.path for a in client.list_artifacts(run_id, "generated"))
    assert grids == ["generated/round000.png", "generated/round001.png"]
    pool = load_safe(tmp_path / "run" / "checkpoints" / "final.pt")["plugin_state"]["generation"]["pool"]
    assert pool["images"].shape[1:] == (3, 8, 8) and len(pool["images"]) == len(pool["labels"]) >= 32


def test_kill_9_inside_generator_training_resumes_exactly(tmp_path: Path, mlflow_store: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A real kill -9 while the DDPM trains: the resumed run continues after the saved generator epoch."""
    monkeypatch.syspath_prepend(str(Path(__file__).parents[2] / "e2e"))  # also when run without tests/e2e
    from test_kill_resume import kill_inside_stage, logged_epochs, metrics


    settings = [s for s in TINY if not s.startswith("generation.pretrain_epochs")] + ["generation.pretrain_epochs=30"]
    monkeypatch.setenv("TOOLKIT_STAGE_CHECKPOINT_SECONDS", "0")
    _run(tmp_path / "full", settings)

    def cmd(out: Path, *extra: str) -> list[str]:
        return [sys.executable, "-m", "toolkit.commands.app", "run", str(RECIPES / "gcc_digits.toml"),
                *[a for s in settings for a in ("--set", s)], "-o", str(out), "--device", "cpu", "--no-progress", *extra]

    env = toolkit_env(MLFLOW_TRACKING_URI=mlflow_store, TOOLKIT_STAGE_CHECKPOINT_SECONDS="0")
    out = tmp_path / "killed"
    proc = subprocess.Popen(cmd(out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    epoch = kill_inside_stage(proc, out / "checkpoints" / "stages" / "generator_pretrain.pt", 3, 30)
    resumed = subprocess.run(cmd(out, "--resume"), env=env, capture_output=True, text=True, timeout=1800)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert metrics(out) == metrics(tmp_path / "full")
    steps = logged_epochs(mlflow_store, out, "generator_pretrain_loss_ddpm")
    assert len(set(steps)) == 30
    assert len(steps) < 30 + epoch, (len(steps), epoch)  # a restart would log the first `epoch` epochs twice


@pytest.mark.parametrize(("stop_stage", "stop_epoch", "expected"), [
    ("self_label", 1, {"generator_pretrain": [], "generator_round1": [1]}),  # between rounds
], ids=["between-rounds"])
def test_gcc_interrupted_resumes_exactly(tmp_path: Path, mlflow_store: str, monkeypatch: pytest.MonkeyPatch,
                                         stop_stage: str, stop_epoch: int, expected: dict) -> None:
    from toolkit.run.events import Observer

    class Stop(Observer):
        def on_epoch_end(self, *, stage: str, epoch: int, metrics: dict, state: object) -> None:
            if stage == stop_stage and epoch == stop_epoch:
                raise KeyboardInterrupt

    class Record(Observer):
        def __init__(self) -> None:
            self.epochs: dict[str, list[int]] = {"generator_pretrain": [], "generator_round1": []}

        def on_epoch_end(self, *, stage: str, epoch: int, metrics: dict, state: object) -> None:
            if stage in self.epochs:
                self.epochs[stage].append(epoch)

    monkeypatch.setenv("TOOLKIT_STAGE_CHECKPOINT_SECONDS", "0")
    full = _run(tmp_path / "full", TINY)
    out = tmp_path / "stopped"
    with pytest.raises(KeyboardInterrupt):
        _run(out, TINY, [Stop()])
    record = Record()
    resumed = _run(out, TINY, [record], resume=True)
    assert record.epochs == expected  # continued where it stopped, nothing retrained
    keys = [k for k, v in full.items() if isinstance(v, float) and k != "seconds"]
    assert {k: resumed[k] for k in keys} == {k: full[k] for k in keys}


def test_generator_joins_another_methods_recipe(tmp_path: Path, mlflow_store: str) -> None:
    """The generation slot is independent: the baseline's self-labeling plus GCC's losses."""
    from toolkit.run.engine import Engine
    from toolkit.recipe.loading import load_recipe

    generation = [s for s in TINY if s.startswith("generation.") and "epochs" not in s or s.startswith("generation.round")]
    settings = [s for s in TINY if not s.startswith(("generation.", "head_init."))] + [
        "head_init.epochs=1", "generation.method=conditional_ddpm", "generation.preset=tiny", *generation,
        "generation.pretrain_epochs=1", "generation.finetune_epochs=0", "generation.grid_per_cluster=0"]
    summary = Engine(load_recipe(RECIPES / "baseline_digits.toml", settings), tmp_path / "run", device="cpu").run()
    assert summary["plugins"]["generation"] == "conditional_ddpm"
    assert math.isfinite(summary["loss_gcc_d"]) and "loss_cluster" in summary


def test_nan_in_generator_training_names_stage_epoch_and_term(tmp_path: Path, mlflow_store: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import json


    from deepclust_gcc.ddpm import ConditionalDDPM
    from toolkit.errors import TrainingError

    real_loss = ConditionalDDPM.loss
    calls = {"n": 0}

    def diverging(self, x0, labels, generator):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        loss = real_loss(self, x0, labels, generator)
        return loss * float("nan") if calls["n"] > 6 else loss  # the second epoch diverges

    monkeypatch.setattr(ConditionalDDPM, "loss", diverging)
    with pytest.raises(TrainingError, match=r"stage generator_pretrain, epoch 2: non-finite loss in generator loss_ddpm"):
        _run(tmp_path / "run", TINY)
    assert json.loads((tmp_path / "run" / "run_state.json").read_text())["status"] == "failed"


def test_pool_refresh_inside_rounds(tmp_path: Path, mlflow_store: str) -> None:
    """pool_refresh_epochs redraws the pool within a round; the cosine schedule trains too."""
    from toolkit.run.engine import Engine
    from toolkit.run.events import Observer
    from toolkit.recipe.loading import load_recipe

    pools: list[int] = []

    class Spy(Observer):
        def on_epoch_end(self, *, stage: str, epoch: int, metrics: dict, state: object) -> None:
            if stage == "self_label" and state is not None:
                gen = state.plugins["generation"]
                pools.append(int(gen.pool.images.float().sum()))

    settings = [s for s in TINY if not s.startswith(("generation.round_epochs", "train.epochs", "generation.grid"))] + [
        "generation.round_epochs=3", "generation.pool_refresh_epochs=1", "generation.beta_schedule=cosine",
        "generation.grid_per_cluster=0", "train.epochs=3"]
    Engine(load_recipe(RECIPES / "gcc_digits.toml", settings), tmp_path / "run", device="cpu", observers=[Spy()]).run()
    assert len(pools) == 3 and len(set(pools)) == 3  # a new pool before every epoch of the one round


def test_paper_recipe_runs_on_cifar_files(tmp_path: Path, mlflow_store: str) -> None:
    """`recipes/gcc_cifar10.toml` as shipped (ResNet-18, split protocol, CIFAR pickles), scaled down only in
    sizes and epochs, runs end to end on files in CIFAR-10's on-disk format."""
    import pickle

    import numpy as np

    from toolkit.run.engine import Engine
    from toolkit.recipe.loading import load_recipe

    rng = np.random.default_rng(0)
    folder = tmp_path / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, size=(8, 3072), dtype=np.uint8),
                 b"labels": rng.integers(0, 10, size=8).tolist()}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    settings = [f"data.root={tmp_path / 'data'}", "data.download=false", "pretrain.epochs=1", "pretrain.batch_size=16",
                "head_init.epochs=1", "head_init.nredo=1", "generation.preset=tiny", "generation.pretrain_epochs=1",
                "generation.finetune_epochs=1", "generation.round_epochs=1", "generation.sampler=dpm_solver",
                "generation.sample_steps=3", "generation.pool_min_per_class=2", "generation.grid_per_cluster=2",
                "train.epochs=2", "train.batch_size=16"]
    summary = Engine(load_recipe(RECIPES / "gcc_cifar10.toml", settings), tmp_path / "run", device="cpu").run()
    assert summary["protocol"] == "split" and summary["n_train"] == 40 and summary["n_eval"] == 8
    assert math.isfinite(summary["loss_gcc_d"]) and 0.0 <= summary["acc"] <= 1.0

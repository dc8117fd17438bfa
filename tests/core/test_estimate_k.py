"""K estimation without labels (`[data] num_clusters = "auto"`): both criteria on separable data, and the
engine's use of it (the chosen K used, logged, plotted, kept on resume; refused where K is needed earlier)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from toolkit.errors import RecipeError
from toolkit.ops.estimate_k import estimate_k
from toolkit.recipe.loading import load_recipe
from toolkit.run.engine import Engine
from toolkit.track.tracker import MlflowTracker

from conftest import RECIPES


def blobs(k: int, per: int = 60, dim: int = 16, seed: int = 0) -> np.ndarray:
    """`k` tight clusters around random directions (features are compared by cosine)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim))
    return np.concatenate([c + 0.08 * rng.normal(size=(per, dim)) for c in centres]).astype(np.float32)


@pytest.mark.parametrize("criterion", ["eigengap", "silhouette"])
@pytest.mark.parametrize("k", [3, 7])
def test_separable_clusters_give_their_number(criterion: str, k: int) -> None:
    estimate = estimate_k(blobs(k), (2, 15), criterion, seed=1)
    assert estimate.k == k, (estimate.ks, estimate.scores)
    assert estimate.ks[0] == 2 and estimate.ks[-1] == 15 and len(estimate.scores) == len(estimate.ks)


def test_an_empty_range_is_refused() -> None:
    with pytest.raises(ValueError, match="k_range"):
        estimate_k(blobs(3, per=2), (5, 50))  # 6 points: K can be at most 4
    with pytest.raises(ValueError, match="criterion"):
        estimate_k(blobs(3), (2, 5), "nosuch")  # type: ignore[arg-type]


TINY = ["pretrain.epochs=2", "pretrain.batch_size=128", "head_init.epochs=1", "head_init.nredo=1", "train.epochs=2",
        "model.hidden_dims=[32]", "data.num_clusters=auto", "data.k_range=[2, 8]",
        "head_init.partition=kmeans"]  # the partition choice is tested in test_head_partition.py


def test_engine_estimates_k_logs_it_and_keeps_it_on_resume(tmp_path: Path, mlflow_store: str) -> None:
    out = tmp_path / "run"
    summary = Engine(load_recipe(RECIPES / "baseline.toml", TINY), out, device="cpu", observers=[MlflowTracker()]).run()
    k = summary["num_clusters"]
    assert 2 <= k <= 8
    assert (out / "k_estimate.png").stat().st_size > 1000
    assert json.loads((out / "summary.json").read_text())["num_clusters"] == k
    run = MlflowClient(mlflow_store).get_run(summary["mlflow_run_id"])
    assert run.data.tags["num_clusters_estimated"] == str(k) and run.data.tags["num_clusters_criterion"] == "silhouette"
    assert "k_estimate.png" in {a.path for a in MlflowClient(mlflow_store).list_artifacts(run.info.run_id)}
    assert np.load(out / "predictions.npy").max() < k

    # a resumed run keeps the K it started with, whatever the estimate would say now
    from toolkit.files import load_safe

    assert load_safe(out / "checkpoints" / "last.pt")["num_clusters"] == k


def test_auto_is_refused_before_a_pretrain_that_trains_the_head(tmp_path: Path, mlflow_store: str) -> None:
    recipe = load_recipe(RECIPES / "drc_digits.toml", ["data.num_clusters=auto", "pretrain.epochs=1"])
    with pytest.raises(RecipeError, match=r"\[data\] num_clusters.*'drc'"):
        Engine(recipe, tmp_path / "run", device="cpu").run()

"""`kmeans_pseudo_label` with `partition = "spectral"`: the head is trained on spectral labels of the
features, through the real engine, and starts self-labeling from that partition."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from toolkit.metrics import cluster_acc
from toolkit.recipe.loading import load_recipe
from toolkit.run.engine import Engine
from toolkit.run.events import Observer

from conftest import RECIPES

TINY = ["pretrain.epochs=5", "pretrain.batch_size=256", "head_init.epochs=8", "train.epochs=0",
        "model.hidden_dims=[64]"]


class Epoch0(Observer):
    """The predictions right after head-init (self-labeling epoch 0)."""

    metrics: dict[str, float] = {}

    def on_epoch_end(self, *, stage: str, epoch: int, metrics: dict[str, float], state: object) -> None:
        if stage == "self_label" and epoch == 0:
            self.metrics = dict(metrics)


def test_the_head_learns_the_spectral_partition(tmp_path: Path, mlflow_store: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import deepclust_baseline.head_kmeans as head_kmeans

    calls: list[tuple[int, int]] = []
    real = head_kmeans.spectral_labels

    def recorded(features, k, neighbours, seed):  # type: ignore[no-untyped-def]
        calls.append((k, neighbours))
        return real(features, k, neighbours, seed)

    monkeypatch.setattr(head_kmeans, "spectral_labels", recorded)
    seen = Epoch0()
    recipe = load_recipe(RECIPES / "baseline.toml", [*TINY, "head_init.partition=spectral", "head_init.neighbours=12"])
    summary = Engine(recipe, tmp_path / "run", device="cpu", observers=[seen]).run()
    assert calls == [(10, 12)]  # the option reached the plugin: spectral labels, not k-means
    assert summary["plugins"]["head_init"] == "kmeans_pseudo_label"
    # trained on the spectral labels, the head is far above chance (0.1) on the digits it clustered
    assert seen.metrics["acc"] > 0.5, seen.metrics
    predictions = np.load(tmp_path / "run" / "predictions.npy")
    assert len(np.unique(predictions)) >= 8
    from sklearn.datasets import load_digits

    assert cluster_acc(predictions, load_digits().target) == summary["acc"]


class HeadInitMetrics(Observer):
    def __init__(self) -> None:
        self.logged: list[dict[str, float]] = []

    def on_epoch_end(self, *, stage: str, epoch: int, metrics: dict[str, float], state: object) -> None:
        if stage == "head_init" and any(k.startswith("silhouette_") for k in metrics):
            self.logged.append(dict(metrics))


def test_auto_partition_scores_the_candidates_and_trains_on_the_pick(tmp_path: Path, mlflow_store: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import deepclust_baseline.head_kmeans as head_kmeans

    picked: list[np.ndarray] = []
    real = head_kmeans.best_partition

    def recorded(*args, **kwargs):  # type: ignore[no-untyped-def]
        result = real(*args, **kwargs)
        picked.append(result[1])
        return result

    monkeypatch.setattr(head_kmeans, "best_partition", recorded)
    seen, epoch0 = HeadInitMetrics(), Epoch0()
    recipe = load_recipe(RECIPES / "baseline.toml", [*TINY, "head_init.partition=auto"])
    Engine(recipe, tmp_path / "run", device="cpu", observers=[seen, epoch0]).run()
    assert len(seen.logged) == 1 and set(seen.logged[0]) == {"silhouette_kmeans", "silhouette_spectral10",
                                                             "silhouette_spectral30", "silhouette_merged",
                                                             "partition_choice"}
    # the head learnt the picked partition: its epoch-0 predictions agree with it far above chance
    from sklearn.datasets import load_digits

    assert cluster_acc(picked[0], load_digits().target) > 0.5 and epoch0.metrics["acc"] > 0.5

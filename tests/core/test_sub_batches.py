"""[train] sub_batch_size (CDC's B_s): a batch is planned once, then trained in chunks with one step each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

import deepclust_cdc.calibration as cdc_calibration
from toolkit.recipe.loading import load_recipe
from toolkit.run.engine import Engine

from conftest import RECIPES

N, B, EPOCHS = 240, 64, 2
TINY = ['data.dataset="synthetic"', f"data.num_samples={N}", "data.num_classes=3", "data.synthetic_size=8",
        "data.synthetic_channels=1", 'pretrain.method="none"', 'head_init.method="random"', f"train.epochs={EPOCHS}",
        f"train.batch_size={B}", "model.hidden_dims=[16]", "model.head_hidden_dim=16",
        "calibration.num_miniclusters=8", "calibration.kmeans_nredo=1", "calibration.kmeans_niter=5"]


def _run(tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch, *extra: str) -> tuple[dict[str, Any], int, list[int]]:
    """The run's summary, its optimiser steps and the row count of every mini-cluster k-means."""
    steps, kmeans_rows = [0], []
    step = torch.optim.Adam.step
    kmeans = cdc_calibration.kmeans

    def counted_step(self: torch.optim.Adam, *args: Any, **kwargs: Any) -> Any:
        steps[0] += 1
        return step(self, *args, **kwargs)

    def counted_kmeans(x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        kmeans_rows.append(int(x.shape[0]))
        return kmeans(x, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", counted_step)
    monkeypatch.setattr(cdc_calibration, "kmeans", counted_kmeans)
    summary = Engine(load_recipe(RECIPES / "cdc_digits.toml", [*TINY, *extra]), tmp_path / name, device="cpu").run()
    monkeypatch.undo()
    return summary, steps[0], kmeans_rows


def test_chunks_step_once_each_and_share_the_batch_statistics(tmp_path: Path, mlflow_store: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    batches = EPOCHS * (N // B)
    plain, plain_steps, plain_rows = _run(tmp_path, "plain", monkeypatch)
    assert plain_steps == batches and plain_rows == [B] * batches
    chunked, chunked_steps, chunked_rows = _run(tmp_path, "chunked", monkeypatch, "train.sub_batch_size=16")
    assert chunked_steps == batches * (B // 16)  # four updates per batch
    assert chunked_rows == [B] * batches  # mini-clusters still over the batch of B, once per batch
    assert chunked["loss"] != pytest.approx(plain["loss"])
    # a sub-batch as large as the batch is the plain loop, to the bit
    whole, whole_steps, _ = _run(tmp_path, "whole", monkeypatch, f"train.sub_batch_size={B}")
    assert whole_steps == plain_steps and whole["loss"] == plain["loss"] and whole["acc"] == plain["acc"]


def _forwards(tmp_path: Path, name: str, recipe: str, monkeypatch: pytest.MonkeyPatch,
              *extra: str) -> list[tuple[int, bool]]:
    """(rows, with gradient) of every backbone+head forward of the self-labeling stage."""
    from toolkit.run.self_label import Models

    calls: list[tuple[int, bool]] = []
    forward = Models.forward

    def counted(self: Models, images: torch.Tensor) -> Any:
        calls.append((int(images.shape[0]), torch.is_grad_enabled()))
        return forward(self, images)

    monkeypatch.setattr(Models, "forward", counted)
    Engine(load_recipe(RECIPES / recipe, [*TINY[:-3], *extra]), tmp_path / name, device="cpu").run()
    monkeypatch.undo()
    return calls


def test_only_the_views_plugins_read_are_forwarded(tmp_path: Path, mlflow_store: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    batches = EPOCHS * (N // B)
    # threshold selection reads the strong view, no calibration the weak one: both, in one joint forward
    both = _forwards(tmp_path, "both", "baseline.toml", monkeypatch, "data.num_clusters=3")
    assert both == [(2 * B, True)] * batches
    # no selection (GCC's stage II without its generator): nothing reads the strong view, it is never forwarded
    weak = _forwards(tmp_path, "weak", "baseline.toml", monkeypatch, "data.num_clusters=3", 'selection.method="none"')
    assert weak == [(B, True)] * batches
    # CDC, separate views, chunks of 16: the plan forwards the weak view without gradient, each chunk only its
    # strong rows with gradient (what Algorithm 1 computes)
    cdc = _forwards(tmp_path, "cdc", "cdc_digits.toml", monkeypatch, 'train.view_forward="separate"',
                    "train.sub_batch_size=16", "calibration.num_miniclusters=8", "calibration.kmeans_nredo=1")
    assert cdc == ([(B, False)] + [(16, True)] * (B // 16)) * batches

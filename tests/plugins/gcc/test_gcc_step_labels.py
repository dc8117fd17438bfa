"""GCC's per-step losses pair every generated image with the label it was generated for, and that label is the
real batch's online pseudo-label of the row it is matched to (Section 3.3.1): a mix-up here would train the
clustering head towards wrong classes while every loss still looks finite."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

import deepclust_gcc.plugin as gcc_plugin
from deepclust_gcc.options import Options
from deepclust_gcc.plugin import ConditionalDDPMGeneration
from deepclust_gcc.pool import Pool

K = 4


def test_generated_batch_carries_the_labels_the_real_batch_asks_for(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, tuple[torch.Tensor, ...]] = {}
    monkeypatch.setattr(gcc_plugin, "loss_d", lambda real, gen, y, k, **kw: seen.setdefault("d", (real, gen, y))[0].sum() * 0)
    monkeypatch.setattr(gcc_plugin, "loss_cwm", lambda gen, y, *a: seen.setdefault("cwm", (gen, y))[0].sum() * 0)
    monkeypatch.setattr(gcc_plugin, "loss_ml", lambda logits, y, *a: seen.setdefault("ml", (logits, y))[0].sum() * 0)

    plugin = ConditionalDDPMGeneration(Options(preset="tiny", lambda_d=1.0, lambda_cwm=1.0, lambda_ml=1.0))
    plugin.ctx = SimpleNamespace(device=torch.device("cpu"), num_clusters=K)
    pool_labels = torch.tensor([3, 0, 2, 1, 3, 0, 2, 1, 1])  # no image of a cluster the batch does not ask for
    plugin.pool = Pool(pool_labels.view(-1, 1, 1, 1).expand(-1, 1, 2, 2).to(torch.uint8) * 50, pool_labels)
    plugin._draw_gen = torch.Generator().manual_seed(0)
    plugin.generated_view = lambda images, gen: images.float()

    def forward(images: torch.Tensor, keep_bn_statistics: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Features = the image's pixels; logits = one-hot of the label the image was generated for."""
        label = (images[:, 0, 0, 0] / 50).round().long()
        return images.flatten(1), torch.nn.functional.one_hot(label, K).float() * 10

    pseudo = torch.tensor([1, 3, 3, 0, 2, 1, 0, 2])  # the real batch's online pseudo-labels (weak view)
    real_feats = torch.arange(8, dtype=torch.float).view(-1, 1).expand(-1, 4)  # row i: all i
    batch = SimpleNamespace(logits_weak=torch.nn.functional.one_hot(pseudo, K).float(), features_weak=real_feats)
    out = plugin.loss(batch, forward)
    assert set(out) == {"gcc_d", "gcc_cwm", "gcc_ml"}
    logits, y = seen["ml"]
    assert torch.equal(y, pseudo)  # every row served, in order, with its own pseudo-label
    assert torch.equal(logits.argmax(1), y)  # each generated image was generated for the label it is paired with
    real, gen, y_d = seen["d"]
    assert torch.equal(y_d, pseudo) and torch.equal(real[:, 0], torch.arange(8.0))  # real rows stay aligned
    assert torch.equal((gen[:, 0] / 50).round().long(), y_d)
    assert torch.equal(seen["cwm"][1], pseudo)


def test_fresh_samples_per_step_are_generated_for_the_rows_labels(monkeypatch: pytest.MonkeyPatch) -> None:
    """fresh_per_step: the step's generated batch is sampled now, one image per real row, for that row's label
    (not drawn from the round's pool, which here holds no image of any label the batch asks for)."""
    seen: dict[str, torch.Tensor] = {}
    monkeypatch.setattr(gcc_plugin, "loss_ml", lambda logits, y, *a: seen.setdefault("y", y).sum() * 0 + logits.sum() * 0)
    plugin = ConditionalDDPMGeneration(Options(preset="tiny", lambda_d=0.0, lambda_cwm=0.0, lambda_ml=1.0,
                                               fresh_per_step=True, sampler="ddim", sample_steps=2))
    plugin.ctx = SimpleNamespace(device=torch.device("cpu"), num_clusters=K)
    plugin.pool = Pool(torch.zeros(2, 1, 2, 2, dtype=torch.uint8), torch.tensor([0, 0]))
    plugin._draw_gen = torch.Generator().manual_seed(0)
    plugin.generated_view = lambda images, gen: images.float()
    asked: list[torch.Tensor] = []

    class FakeDDPM:
        def generate(self, labels, sampler, steps, gen, use_ema, batch_size, clip):  # type: ignore[no-untyped-def]
            asked.append(labels.clone())
            return (labels.float() / 2 - 0.75).view(-1, 1, 1, 1).expand(-1, 1, 2, 2)  # pixel value codes the label

    plugin.trainer = SimpleNamespace(ddpm=FakeDDPM())

    def forward(images: torch.Tensor, keep_bn_statistics: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        return images.flatten(1), images.flatten(1)[:, :K]

    pseudo = torch.tensor([1, 3, 3, 0, 2])
    batch = SimpleNamespace(logits_weak=torch.nn.functional.one_hot(pseudo, K).float(), features_weak=torch.zeros(5, 4))
    out = plugin.loss(batch, forward)
    assert set(out) == {"gcc_ml"} and len(asked) == 1
    assert torch.equal(asked[0], pseudo) and torch.equal(seen["y"], pseudo)

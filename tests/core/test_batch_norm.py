"""BatchNorm running statistics: a forward that leaves them alone, and re-estimation on real images."""

from __future__ import annotations

import torch
from torch import nn

from toolkit.nn.batch_norm import frozen_statistics, recalibrate
from toolkit.run.self_label import Models


def _net() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU()), nn.Sequential(nn.Linear(8, 3),
                                                                                       nn.BatchNorm1d(3))


def _stats(*modules: nn.Module) -> list[torch.Tensor]:
    return [b.clone() for m in modules for b in m.buffers()]


def test_frozen_statistics_normalise_the_batch_but_keep_the_running_averages() -> None:
    backbone, head = _net()
    x = torch.randn(16, 4) * 5 + 3
    head(backbone(x))  # one real batch moves the statistics
    before = _stats(backbone, head)
    models = Models(backbone, head)
    feats, _ = models.forward(torch.randn(16, 4) * 9 - 7, keep_bn_statistics=True)
    assert all(torch.equal(a, b) for a, b in zip(before, _stats(backbone, head)))
    assert abs(float(backbone[1](backbone[0](x)).mean())) < 1e-5  # still batch-normalised in train mode
    assert backbone[1].momentum == 0.1  # restored afterwards
    before = _stats(backbone, head)
    models.forward(torch.randn(16, 4))  # an ordinary forward does move them
    assert not all(torch.equal(a, b) for a, b in zip(before, _stats(backbone, head)))
    with frozen_statistics(backbone):
        assert backbone[1].momentum == 0.0


def test_recalibrate_gives_the_real_images_statistics() -> None:
    backbone, head = _net()
    real = torch.randn(300, 4) * 2 + 1
    for _ in range(5):
        head(backbone(torch.randn(64, 4) * 10 - 20))  # statistics of images that are not the data
    backbone.eval()
    head.train(False)
    assert recalibrate(backbone, head, real, lambda x: x, torch.device("cpu"), batch_size=100) == 2
    assert not backbone.training and not head.training  # modes restored
    hidden = backbone[0](real)
    assert torch.allclose(backbone[1].running_mean, hidden.mean(0), atol=1e-4)
    assert torch.allclose(backbone[1].running_var, hidden.var(0), rtol=0.05)  # mean of per-batch unbiased vars
    before = _stats(backbone)
    recalibrate(backbone, head, real, lambda x: x, torch.device("cpu"), backbone_frozen=True)
    assert all(torch.equal(a, b) for a, b in zip(before, _stats(backbone)))  # a frozen backbone keeps its own


def test_a_run_recalibrates_before_every_evaluation(tmp_path, mlflow_store, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import toolkit.run.engine as engine_module
    from toolkit.recipe.loading import validate
    from toolkit.run.engine import Engine

    calls: list[int] = []
    real = engine_module.recalibrate

    def counted(backbone, head, images, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(len(images))
        return real(backbone, head, images, *args, **kwargs)

    monkeypatch.setattr(engine_module, "recalibrate", counted)
    recipe = {"experiment": {"device": "cpu"},
              "data": {"dataset": "synthetic", "num_samples": 120, "num_classes": 3, "synthetic_size": 8,
                       "synthetic_channels": 1},
              "model": {"backbone": "mlp", "hidden_dims": [16], "head_hidden_dim": 8},
              "train": {"epochs": 2, "batch_size": 32, "bn_recalibrate": True}}
    Engine(validate(recipe, "tiny"), tmp_path / "run", device="cpu").run()
    assert calls == [120, 120, 120]  # after head-init and after each of the 2 epochs, on every training image
    calls.clear()
    Engine(validate({**recipe, "train": {"epochs": 2, "batch_size": 32}}, "tiny"), tmp_path / "off", device="cpu").run()
    assert calls == []

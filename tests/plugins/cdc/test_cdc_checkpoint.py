"""Pretrain `checkpoint`: key layouts of MoCo, solo-learn, SCAN, SPICE, CDC and toolkit files map onto the
toolkit's ResNet-18 / MLP backbones, and a file that does not fit fails with one line naming the keys."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from deepclust_cdc.keymap import map_keys, unwrap
from deepclust_cdc.pretrain_checkpoint import CheckpointPretrain
from toolkit.errors import UserError
from toolkit.nn.backbones import build_backbone
from toolkit.nn.config import BackboneConfig


def _resnet() -> nn.Module:
    return build_backbone(BackboneConfig(name="resnet18"), 3, (32, 32))


def _source() -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    return {k: v.clone() for k, v in _resnet().state_dict().items()}


def _scan_names(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k.replace(".downsample.", ".shortcut."): v for k, v in sd.items()}


def _layouts(sd: dict[str, torch.Tensor]) -> dict[str, object]:
    head = {"weight": torch.zeros(10, 512), "bias": torch.zeros(10)}
    return {
        "moco": {"epoch": 200, "arch": "resnet18", "state_dict": {
            **{f"module.encoder_q.{k}": v for k, v in sd.items()},
            "module.encoder_q.fc.0.weight": torch.zeros(512, 512), "module.encoder_q.fc.2.weight": torch.zeros(128, 512),
            **{f"module.encoder_k.{k}": v + 1 for k, v in sd.items()},
            "module.queue": torch.zeros(128, 4096), "module.queue_ptr": torch.zeros(1, dtype=torch.long)}},
        "solo-learn": {"epoch": 999, "state_dict": {
            **{f"backbone.{k}": v for k, v in sd.items()}, "projector.0.weight": torch.zeros(4096, 512),
            **{f"momentum_backbone.{k}": v + 1 for k, v in sd.items()}, "queue": torch.zeros(2, 256, 32768),
            "classifier.weight": head["weight"], "classifier.bias": head["bias"]}},
        "scan-pretext": {**{f"backbone.{k}": v for k, v in _scan_names(sd).items()},
                         "contrastive_head.0.weight": torch.zeros(512, 512)},
        "scan": {"model": {**{f"backbone.{k}": v for k, v in _scan_names(sd).items()},
                           **{f"cluster_head.{i}.{n}": t for i in range(3) for n, t in head.items()}}, "head": 0},
        "spice": {"state_dict": {**{f"module.feature_module.{k}": v for k, v in _scan_names(sd).items()},
                                 **{f"module.head.head_{i}.classifier.{n}": t for i in range(2) for n, t in head.items()}}},
        "cdc": {"model": {**{f"backbone.{k}": v for k, v in sd.items()},
                          **{f"cluster_head.0.{n}": t for n, t in head.items()}}},
        "toolkit": {"backbone": sd, "head": None, "epoch": 3},
    }


@pytest.mark.parametrize("layout", ["moco", "solo-learn", "scan-pretext", "scan", "spice", "cdc", "toolkit"])
def test_known_layouts_load(layout: str, tmp_path: Path) -> None:
    sd = _source()
    path = tmp_path / f"{layout}.pt"
    torch.save(_layouts(sd)[layout], path)
    plugin = CheckpointPretrain(CheckpointPretrain.Options(path=str(path)))
    fresh = _resnet()
    out = plugin.pretrain(SimpleNamespace(device=torch.device("cpu"), warn=print), fresh).backbone  # type: ignore[arg-type]
    loaded = out.state_dict()
    assert set(loaded) == set(sd)
    assert all(torch.equal(loaded[k], sd[k]) for k in sd), layout  # the query/online encoder, not the momentum one


def test_mlp_backbone_from_toolkit_final_checkpoint(tmp_path: Path) -> None:
    cfg = BackboneConfig(name="mlp", hidden_dims=[32, 16])
    torch.manual_seed(2)
    source = build_backbone(cfg, 1, (8, 8))
    torch.save({"backbone": source.state_dict(), "head": {"net.0.weight": torch.zeros(10, 16)},
                "plugin_modules": {}, "num_clusters": 10, "epoch": 5}, tmp_path / "final.pt")
    fresh = build_backbone(cfg, 1, (8, 8))
    CheckpointPretrain(CheckpointPretrain.Options(path=str(tmp_path / "final.pt"))).pretrain(
        SimpleNamespace(device=torch.device("cpu"), warn=print), fresh)  # type: ignore[arg-type]
    assert torch.equal(fresh.state_dict()["net.1.weight"], source.state_dict()["net.1.weight"])


def test_mismatch_is_one_clear_line(tmp_path: Path) -> None:
    sd = _source()
    del sd["layer4.1.bn2.weight"]
    sd["layer5.0.conv1.weight"] = torch.zeros(1)
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in sd.items()}}, tmp_path / "bad.pt")
    plugin = CheckpointPretrain(CheckpointPretrain.Options(path=str(tmp_path / "bad.pt")))
    with pytest.raises(UserError) as info:
        plugin.pretrain(SimpleNamespace(device=torch.device("cpu"), warn=print), _resnet())  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message and "bad.pt" in message
    assert "missing keys (1): layer4.1.bn2.weight" in message
    assert "unexpected keys (1): layer5.0.conv1.weight" in message


def test_shape_mismatch_and_wrong_file(tmp_path: Path) -> None:
    sd = _source()
    sd["conv1.weight"] = torch.zeros(64, 3, 7, 7)  # ImageNet stem into the CIFAR ResNet
    torch.save(sd, tmp_path / "imagenet_stem.pt")
    with pytest.raises(UserError, match=r"shape mismatch: conv1.weight \(64, 3, 7, 7\) vs \(64, 3, 3, 3\)"):
        CheckpointPretrain(CheckpointPretrain.Options(path=str(tmp_path / "imagenet_stem.pt"), strict=False)).pretrain(
            SimpleNamespace(device=torch.device("cpu"), warn=print), _resnet())  # type: ignore[arg-type]
    torch.save({"epoch": 3}, tmp_path / "empty.pt")
    with pytest.raises(UserError, match="no state dict found"):
        CheckpointPretrain(CheckpointPretrain.Options(path=str(tmp_path / "empty.pt"))).pretrain(
            SimpleNamespace(device=torch.device("cpu"), warn=print), _resnet())  # type: ignore[arg-type]
    with pytest.raises(UserError, match="not found"):
        CheckpointPretrain(CheckpointPretrain.Options(path=str(tmp_path / "nope.pt"))).pretrain(
            SimpleNamespace(device=torch.device("cpu"), warn=print), _resnet())  # type: ignore[arg-type]


def test_prefix_detection_prefers_the_online_encoder() -> None:
    sd = _source()
    state = unwrap(_layouts(sd)["moco"])
    mapped, prefix = map_keys(state, set(sd))
    assert prefix == "module.encoder_q." and set(mapped) == set(sd)


def test_spice_resnet34_weights_need_the_max_pool_stem(tmp_path: Path) -> None:
    """SPICE's ResNet-34 (IIC's ClusterResNet) pools after the stem; a max-pool has no weights, so the keys fit
    the plain CIFAR ResNet-34 and would load silently: the layout tells, and the plugin refuses in one line."""
    def resnet34(name: str) -> nn.Module:
        return build_backbone(BackboneConfig(name=name), 3, (32, 32))

    torch.manual_seed(3)
    sd = resnet34("resnet34_maxpool").state_dict()
    torch.save({"state_dict": {f"module.feature_module.{k}": v for k, v in _scan_names(sd).items()}},
               tmp_path / "spice34.pt")
    ctx = SimpleNamespace(device=torch.device("cpu"), warn=print)
    with pytest.raises(UserError) as info:
        CheckpointPretrain(CheckpointPretrain.Options(path=str(tmp_path / "spice34.pt"))).pretrain(
            ctx, resnet34("resnet34"))  # type: ignore[arg-type]
    assert "\n" not in str(info.value) and "model.backbone=resnet34_maxpool" in str(info.value)
    pooled = CheckpointPretrain(CheckpointPretrain.Options(path=str(tmp_path / "spice34.pt"))).pretrain(
        ctx, resnet34("resnet34_maxpool")).backbone  # type: ignore[arg-type]
    assert torch.equal(pooled.state_dict()["layer3.5.conv2.weight"], sd["layer3.5.conv2.weight"])
    assert pooled(torch.zeros(2, 3, 32, 32)).shape == (2, 512)
    # opting out loads into the plain backbone; SPICE's 18-layer (CIFAR) weights have no max-pool and load as is
    CheckpointPretrain(CheckpointPretrain.Options(path=str(tmp_path / "spice34.pt"), stem_check=False)).pretrain(
        ctx, resnet34("resnet34"))  # type: ignore[arg-type]
    torch.save({"state_dict": {f"module.feature_module.{k}": v for k, v in _scan_names(_source()).items()}},
               tmp_path / "spice18.pt")
    CheckpointPretrain(CheckpointPretrain.Options(path=str(tmp_path / "spice18.pt"))).pretrain(ctx, _resnet())  # type: ignore[arg-type]
    # the pool halves the stem's map: 32 -> 17 (kernel 2, stride 2, padding 1), as IIC's ClusterResNet
    assert pooled.maxpool(torch.zeros(1, 64, 32, 32)).shape[-1] == 17

"""The engine checks every slot output where it receives it, so a plugin's mistake stops the run with one line
naming the plugin, slot, method and what was wrong, instead of a FINISHED run with impossible numbers
(logits taken for probabilities gave an ECE of 1.59; a probability matrix one column short, "9 clusters").

Shape and dtype checks cost nothing and run on every call. Value checks (ranges, sums, finiteness) read the
tensor on the host, which would stall a GPU every step: they run on every call on the CPU and on the first
step of each epoch elsewhere (`values=True`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from toolkit.api.context import Selection
from toolkit.api.slots import Plugin, PretrainResult
from toolkit.errors import TrainingError

#: How far a row of probabilities may sum from 1 (bf16 softmax on a GPU is within 1e-2).
SUM_TOLERANCE = 2e-2


class PluginContractError(TrainingError):
    """A plugin returned something its slot's contract does not allow."""


@dataclass(frozen=True)
class Call:
    """Which plugin method produced the value being checked, for the error line."""

    plugin: Plugin[Any]
    method: str
    stage: str
    epoch: int | None = None

    def fail(self, problem: str) -> PluginContractError:
        when = f"stage {self.stage}" + (f", epoch {self.epoch}" if self.epoch is not None else "")
        return PluginContractError(f"{when}: {self.plugin.slot} plugin '{self.plugin.name}' returned a bad value "
                                   f"from {self.method}(): {problem}")


def _tensor(call: Call, value: Any, what: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise call.fail(f"{what} must be a torch.Tensor, got {type(value).__name__}")
    return value


def probabilities(call: Call, value: Any, rows: int, k: int, values: bool) -> torch.Tensor:
    """[rows, k] floating probabilities whose rows sum to 1."""
    probs = _tensor(call, value, "the probabilities")
    if probs.ndim != 2 or tuple(probs.shape) != (rows, k):
        raise call.fail(f"probabilities must have shape [{rows}, {k}] (batch rows x clusters), got {list(probs.shape)}")
    if not probs.is_floating_point():
        raise call.fail(f"probabilities must be floating point, got {probs.dtype}")
    if values and rows:
        p = probs.detach().float()
        if not bool(torch.isfinite(p).all()):
            raise call.fail("probabilities hold NaN or infinite values")
        low, high = float(p.min()), float(p.max())
        sums = p.sum(dim=1)
        worst = float((sums - 1).abs().max())
        if low < -1e-6 or high > 1 + 1e-6 or worst > SUM_TOLERANCE:
            hint = " (logits instead of probabilities? apply softmax)" if low < 0 or high > 1 else ""
            raise call.fail(f"probabilities must lie in [0, 1] with rows summing to 1; got values in "
                            f"[{low:.3g}, {high:.3g}] and row sums in [{float(sums.min()):.3g}, "
                            f"{float(sums.max()):.3g}]{hint}")
    return probs


def selections(call: Call, value: Any, rows: int, k: int, values: bool) -> list[Selection]:
    """One Selection or a non-empty list of them, each well-formed for a batch of `rows` rows and k clusters."""
    found = value if isinstance(value, list) else [value]
    if not found:
        raise call.fail("an empty list: return at least one Selection (an empty Selection selects nothing)")
    for sel in found:
        if not isinstance(sel, Selection):
            raise call.fail(f"must return a Selection or a list of Selections, got {type(sel).__name__}")
        _selection(call, sel, rows, k, values)
    return found


def _selection(call: Call, sel: Selection, rows: int, k: int, values: bool) -> None:
    name = f"Selection '{sel.name}'"
    idx = _tensor(call, sel.rows, f"{name}.rows")
    labels = _tensor(call, sel.labels, f"{name}.labels")
    if idx.ndim != 1 or idx.dtype != torch.long:
        raise call.fail(f"{name}.rows must be a 1-D long tensor of batch rows, got {idx.dtype} {list(idx.shape)}")
    if labels.ndim != 1 or labels.dtype != torch.long:
        raise call.fail(f"{name}.labels must be a 1-D long tensor of cluster ids, got {labels.dtype} {list(labels.shape)}")
    if len(labels) != len(idx):
        raise call.fail(f"{name} has {len(idx)} rows but {len(labels)} labels")
    if sel.weights is not None:
        w = _tensor(call, sel.weights, f"{name}.weights")
        if tuple(w.shape) != (len(idx),) or not w.is_floating_point():
            raise call.fail(f"{name}.weights must be {len(idx)} floats (one per row), got {w.dtype} {list(w.shape)}")
    if sel.view not in ("weak", "strong"):
        raise call.fail(f"{name}.view must be 'weak' or 'strong', got {sel.view!r}")
    if sel.normalize not in ("selected", "batch"):
        raise call.fail(f"{name}.normalize must be 'selected' or 'batch', got {sel.normalize!r}")
    if values and len(idx):
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= rows:
            raise call.fail(f"{name}.rows must be batch rows in [0, {rows}), got values in [{lo}, {hi}] "
                            "(data-set positions are Batch.positions; a Selection names rows of the batch)")
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= k:
            raise call.fail(f"{name}.labels must be cluster ids in [0, {k}), got values in [{lo}, {hi}]")


def losses(call: Call, value: Any) -> dict[str, torch.Tensor]:
    """A dict of named scalar floating tensors."""
    if not isinstance(value, dict):
        raise call.fail(f"must return a dict of named loss tensors, got {type(value).__name__}")
    for key, loss in value.items():
        t = _tensor(call, loss, f"loss '{key}'")
        if t.numel() != 1 or not t.is_floating_point():
            raise call.fail(f"loss '{key}' must be a floating scalar tensor, got {t.dtype} {list(t.shape)}")
    return value


def pretrain_result(call: Call, value: Any) -> PretrainResult:
    if not isinstance(value, PretrainResult):
        raise call.fail(f"must return a PretrainResult, got {type(value).__name__}")
    if not isinstance(value.backbone, nn.Module):
        raise call.fail(f"PretrainResult.backbone must be an nn.Module, got {type(value.backbone).__name__}")
    if value.head is not None and not isinstance(value.head, nn.Module):
        raise call.fail(f"PretrainResult.head must be an nn.Module or None, got {type(value.head).__name__}")
    return value


@torch.no_grad()
def head(call: Call, value: Any, features: torch.Tensor, k: int) -> nn.Module:
    """An nn.Module mapping features [B, D] to logits [B, k]."""
    if not isinstance(value, nn.Module):
        raise call.fail(f"must return the head as an nn.Module, got {type(value).__name__}")
    was_training = value.training
    value.eval()
    try:
        out = value(features[:2].float())
    except Exception as exc:  # noqa: BLE001 - a head that cannot take the features is the plugin's mistake
        raise call.fail(f"the head fails on features of shape {list(features[:2].shape)}: "
                        f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc
    finally:
        value.train(was_training)
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[1] != k:
        shape = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise call.fail(f"the head must map features [B, {features.shape[1]}] to logits [B, {k}], got {shape}")
    return value

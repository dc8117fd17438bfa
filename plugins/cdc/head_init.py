"""Head-init `prototype`: CDC's feature-prototype initialisation of the clustering head (spec 2.5)."""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from plugins.cdc.prototypes import prototypes, separate
from toolkit.context import RunContext
from toolkit.errors import PluginError
from toolkit.hooks import HeadInitPlugin


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    niter: int = Field(100, ge=1, description="k-means iterations")
    nredo: int = Field(10, ge=1, description="k-means restarts (best inertia kept); the paper's n_init")
    orthogonalize: bool = Field(True, description="prototype separation after k-means ('CDC-Init'); off = 'Only K-means'")
    ortho_steps: int = Field(2000, ge=1, description="SGD steps of the separation")
    ortho_scale: float = Field(5.0, gt=0, description="logit scale s of the separation (1 / temperature)")
    ortho_lr: float = Field(0.1, gt=0)


class PrototypeHeadInit(HeadInitPlugin):
    """k-means prototypes of the features (and of the hidden layer) as head weights, biases zero.

    Works for both head shapes of [model] head_hidden_dim: the MLP (H then C prototypes) and the
    linear head (C prototypes of the features).
    """

    Options = Options

    def init_head(self, ctx: RunContext, backbone: nn.Module, features: torch.Tensor,
                  pretrained_head: nn.Module | None) -> nn.Module:
        o: Options = self.options  # type: ignore[assignment]
        feats = features.float()
        head = ctx.build_head(int(feats.shape[1]))
        if not hasattr(head, "first") or not hasattr(head, "last"):
            raise PluginError("head_init prototype: the head has no .first/.last Linear layers to fill")
        hidden = getattr(head, "hidden_dim", None)
        n = len(feats)
        need = hidden or ctx.num_clusters
        if need > n:
            raise PluginError(f"head_init prototype: {need} prototypes need at least as many images, got {n}")
        km = dict(niter=o.niter, nredo=o.nredo, seed=ctx.seed)
        sep = dict(steps=o.ortho_steps if o.orthogonalize else 0, scale=o.ortho_scale, lr=o.ortho_lr)
        with torch.no_grad():
            if hidden is None:
                w_last = prototypes(feats, ctx.num_clusters, **km)
                w_first = None
            else:
                w_first = prototypes(feats, hidden, **km)
                # A fresh BN in eval mode is the identity (up to sqrt(1 + eps)), so ReLU(BN(h)) = ReLU(h).
                activ = torch.relu(feats @ w_first.t())
                w_last = prototypes(activ, ctx.num_clusters, **km)
        if w_first is not None:
            _fill(head.first, separate(w_first, **sep))
        _fill(head.last, separate(w_last, **sep))
        return head


def _fill(layer: nn.Linear, weight: torch.Tensor) -> None:
    with torch.no_grad():
        layer.weight.copy_(weight.to(layer.weight.device))
        if layer.bias is not None:
            layer.bias.zero_()

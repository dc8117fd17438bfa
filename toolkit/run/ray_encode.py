"""`[train] encode = "ray"`: a frozen backbone's features of the raw view computed by Ray Data tasks.

Embedding a large image set through a big frozen model (a foundation backbone) is the slow, embarrassingly
parallel part of a head-only run; on a Ray cluster every node can take a share. Only the raw view goes out: it
draws nothing, so the features are those of a local pass (same module, view and chunk size; floating-point
results may differ in the last bits between machines' kernels). Augmented copies stay local, because their draws
follow one generator chunk after chunk. The module and the images go to Ray's object store once; each task
encodes one block of `chunk` positions on its worker's CPU (or GPU when it has one). Ray joins the cluster RAY_ADDRESS
names, or starts a local instance; an initialised Ray is used as it is.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import nn

from toolkit.data.ray_decode import ray_data
from toolkit.data.views import BatchView


def _encode_block(batch: dict[str, np.ndarray], module: list[Any], view: BatchView, images: list[Any]) -> dict:
    """One Ray Data task: the module and the images come as object references (in lists, so Ray hands them over
    unresolved and the worker fetches them from its node's object store), the block names its positions."""
    import ray

    rows = np.asarray(batch["data"])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net = ray.get(module[0]).to(device).eval()
    x = torch.from_numpy(np.ascontiguousarray(ray.get(images[0])[rows])).to(device)
    with torch.no_grad():
        out = net(view(x)).float().cpu().numpy()
    return {"position": rows, "feature": out}


def encode(module: nn.Module, view: BatchView, images: torch.Tensor, chunk: int) -> torch.Tensor:
    """Features [N, D] of `view(images)` through `module`, one Ray Data task per block of `chunk`, in order."""
    import ray

    data = ray_data('[train] encode = "ray"', 'encode = "local"')
    n = len(images)
    # one block of positions per chunk, made here (no read tasks); tasks, not actors: Ray runs as many at once
    # as the cluster has CPUs and nothing waits for a CPU another operator holds
    blocks = data.from_numpy([np.arange(a, min(a + chunk, n), dtype=np.int64) for a in range(0, n, chunk)])
    refs = {"module": [ray.put(copy.deepcopy(module).cpu().eval())], "images": [ray.put(images.cpu().numpy())]}
    encoded = blocks.map_batches(_encode_block, fn_kwargs={**refs, "view": view}, batch_size=None,
                                 batch_format="numpy")
    parts, positions = [], []
    for batch in encoded.iter_batches(batch_size=None, batch_format="numpy"):
        parts.append(np.asarray(batch["feature"]))
        positions.append(np.asarray(batch["position"]))
    features = np.concatenate(parts)
    order = np.argsort(np.concatenate(positions), kind="stable")  # preserve_order keeps it; checked, not assumed
    return torch.from_numpy(np.ascontiguousarray(features[order]))


def remote_encoder(setting: str) -> Any:
    """The encoder RunContext uses for raw-view passes: this module's `encode` for "ray", None for "local"."""
    return encode if setting == "ray" else None

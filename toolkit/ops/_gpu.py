"""faiss on a GPU: whether to use it for given inputs, and one shared set of GPU resources.

faiss-gpu is optional (the `gpu` extra). Inputs already on CUDA go to a faiss GPU index when faiss has
one; everything else stays on the CPU, so a CPU run never touches a GPU and CI needs none.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import faiss


def faiss_gpus() -> int:
    """Number of GPUs faiss can use (0 with faiss-cpu, which has no GPU indexes)."""
    if not hasattr(faiss, "StandardGpuResources"):
        return 0
    return int(faiss.get_num_gpus()) if hasattr(faiss, "get_num_gpus") else 0


def on_cuda(x: Any) -> bool:
    """Whether `x` is a torch tensor on a CUDA device (numpy arrays never are)."""
    device = getattr(x, "device", None)
    return getattr(device, "type", None) == "cuda"


def use_gpu(gpu: bool | None, x: Any = None) -> bool:
    """Resolve the gpu flag: None = a faiss GPU when faiss has one and `x` is a CUDA tensor;
    True without any faiss GPU is an error."""
    available = faiss_gpus()
    if gpu is None:
        return available > 0 and on_cuda(x)
    if gpu and available == 0:
        raise ValueError("gpu=True but faiss sees no GPU (install the `gpu` extra: see README, GPU set-up)")
    return bool(gpu)


def gpu_id(x: Any) -> int:
    """The CUDA device a tensor is on (the current device for anything else)."""
    if on_cuda(x) and x.device.index is not None:
        return int(x.device.index)
    import torch

    return torch.cuda.current_device() if torch.cuda.is_available() else 0


@lru_cache(maxsize=None)
def resources(device: int) -> Any:
    """One StandardGpuResources per device for the whole process: creating one per call allocates
    its scratch memory again each time, which would dominate small searches."""
    return faiss.StandardGpuResources()


def flat_index(d: int, inner_product: bool, device: int) -> Any:
    """An exact (flat) GPU index on `device`: inner product or squared L2."""
    cfg = faiss.GpuIndexFlatConfig()
    cfg.device = device
    cls = faiss.GpuIndexFlatIP if inner_product else faiss.GpuIndexFlatL2
    return cls(resources(device), d, cfg)

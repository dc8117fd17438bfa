"""Run-wide speed settings ([train] compile, channels_last, data_on_device) resolved against the device.

Each setting is a no-op where it would not pay off, so one recipe runs unchanged on a laptop CPU and
on a GPU: "auto" turns channels_last and device-resident data on for CUDA only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

#: The uint8 data set may take at most this share of the device's free memory (the rest is for training).
DEVICE_DATA_SHARE = 0.25


def uses_conv(module: nn.Module) -> bool:
    """Whether channels_last can matter: only 2-D convolutions have a memory-format choice."""
    return any(isinstance(m, nn.Conv2d) for m in module.modules())


def compile_supported() -> bool:
    """torch.compile needs nn.Module.compile and a Python that TorchDynamo supports."""
    if not hasattr(nn.Module, "compile"):
        return False
    try:
        import torch._dynamo as dynamo

        return bool(dynamo.is_dynamo_supported())
    except Exception:  # noqa: BLE001 - any import or platform failure means "not available"
        return False


def fits_on(device: torch.device, nbytes: int, share: float = DEVICE_DATA_SHARE) -> bool:
    """Whether `nbytes` fit in `share` of the CUDA device's free memory (False for other devices)."""
    if device.type != "cuda":
        return False
    free, _total = torch.cuda.mem_get_info(device)
    return nbytes <= share * free


@dataclass(frozen=True)
class Speed:
    """The resolved settings for one run; `prepare` applies them to a backbone."""

    device: torch.device
    channels_last: bool | str = "auto"
    compile: bool = False

    def data_device(self, setting: bool | str, nbytes: int) -> torch.device:
        """Where the uint8 images live: the run's device when asked (or, with auto, on CUDA when they fit),
        else the host, from which each batch is copied (pinned, non-blocking)."""
        if self.device.type == "cpu" or setting is False:
            return torch.device("cpu")
        if setting is True or fits_on(self.device, nbytes):
            return self.device
        return torch.device("cpu")

    def wants_channels_last(self, module: nn.Module) -> bool:
        if self.channels_last == "auto":
            return self.device.type == "cuda" and uses_conv(module)
        return bool(self.channels_last)

    def prepare(self, module: nn.Module, warn: Callable[[str], None] | None = None) -> nn.Module:
        """channels_last weights and/or torch.compile, in place (state_dict keys stay unchanged).

        Idempotent, so the engine can apply it both to fresh backbones and to what pretraining returns.
        Converting the weights is enough: convolutions follow a channels_last weight.
        """
        if self.wants_channels_last(module):
            module.to(memory_format=torch.channels_last)
        if self.compile and getattr(module, "_compiled_call_impl", None) is None:
            if compile_supported():
                module.compile()
            elif warn is not None:
                warn("[train] compile = true, but torch.compile is not available here; running uncompiled")
        return module

"""Shared set-up of the speed benchmarks: a synthetic CIFAR-size set, a RunContext like the engine's, tables.

The benchmarks build what `Engine.run` builds (context, views, backbone, head) without MLflow or a recipe
file, so each one times a single stage and nothing else.
"""

from __future__ import annotations

import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from toolkit.run.speed import Speed
from toolkit.api.context import PluginEvents, RunContext, UnlabeledImages, Views
from toolkit.data.synthetic import make_synthetic
from toolkit.data.views import AugmentConfig, BatchView, channel_stats
from toolkit.run.events import EventBus
from toolkit.nn.backbones import build_backbone
from toolkit.nn.config import BackboneConfig
from toolkit.nn.heads import ClusterHead
from toolkit.recipe.loading import read_toml

ROOT = Path(__file__).resolve().parents[1]
CDC_RECIPE = ROOT / "recipes" / "cdc_cifar10.toml"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def set_threads(threads: int) -> None:
    """CPU threads of every pool in the process (torch, faiss and scikit-learn's OpenMP, BLAS); 0 = defaults.

    One thread keeps OpenMP barriers from stalling when other processes share the cores.
    """
    if threads > 0:
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(threads)
        _LIMITS.append(threadpool_limits(limits=threads))


_LIMITS: list[object] = []  # keeps the threadpoolctl limits alive for the whole run


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so wall-clock times cover it (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    """Wall-clock seconds of `fn`, queued GPU work included."""
    return timed_both(fn, device)[0]


def timed_both(fn: Callable[[], Any], device: torch.device) -> tuple[float, float]:
    """(wall, CPU) seconds of `fn`. CPU time of the process is what a CPU-only comparison should use on a
    machine shared with other processes: it does not count the time the scheduler gave to someone else."""
    sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    sync(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def recipe_views(recipe: Path = CDC_RECIPE) -> tuple[AugmentConfig, AugmentConfig]:
    """The weak and strong views of a paper recipe (CIFAR-10 CDC by default)."""
    views = read_toml(recipe).get("views", {})
    return AugmentConfig(**views.get("weak", {})), AugmentConfig(**views.get("strong", {}))


def synthetic_context(n: int, *, size: int = 32, classes: int = 10, batch_size: int = 256, seed: int = 0,
                      device: torch.device, backbone: str = "resnet18", data_on_device: bool | str = "auto",
                      channels_last: bool | str = "auto", compile: bool = False) -> tuple[RunContext, Speed]:
    """A RunContext over `n` synthetic RGB images (uint8), with the CDC recipe's views, as the engine makes it."""
    data = make_synthetic(n, classes, size, 3, seed)
    mean, std = channel_stats(data.images)
    weak, strong = recipe_views()
    views = Views(raw=BatchView(None, mean, std), weak=BatchView(weak, mean, std), strong=BatchView(strong, mean, std))
    speed = Speed(device, channels_last, compile)
    images = data.images.to(speed.data_device(data_on_device, data.images.nbytes))
    cfg = BackboneConfig(name=backbone, width=32)

    def new_backbone() -> nn.Module:
        return speed.prepare(build_backbone(cfg, 3, (size, size)).to(device))

    def new_head(dim: int) -> nn.Module:
        return ClusterHead(dim, classes, 512).to(device)

    ctx = RunContext(UnlabeledImages(images, "synthetic"), classes, device, seed, views, PluginEvents(EventBus([])),
                     new_backbone, new_head, batch_size)
    return ctx, speed


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (pastes straight into benchmarks/RESULTS.md)."""
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)

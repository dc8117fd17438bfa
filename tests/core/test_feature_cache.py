"""The disk feature cache behind `RunContext.encode_copies`: a hit reads what a miss encoded (bit for bit), and
any change to the weights, the view's settings, the images or the draws is a miss; concurrent processes asking
for one key encode it once."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from toolkit.api.context import RunContext, UnlabeledImages, Views
from toolkit.data.views import AugmentConfig, BatchView
from toolkit.run.events import EventBus
from toolkit.run.feature_cache import FeatureCache


class Counting(nn.Module):
    """A frozen 'backbone' (flatten then a linear map) that counts the images it encoded."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.linear = nn.Linear(64, 5)
        with torch.no_grad():
            self.linear.weight.copy_(torch.linspace(-1, 1, 320).view(5, 64) * scale)
            self.linear.bias.zero_()
        self.images = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.images += len(x)
        return self.linear(x.flatten(1))


def _ctx(store: FeatureCache, degrees: float = 10.0, seed_images: int = 0) -> RunContext:
    rng = np.random.default_rng(seed_images)
    images = UnlabeledImages(torch.as_tensor(rng.integers(0, 256, (40, 1, 8, 8), dtype=np.uint8)), "noise")
    raw = BatchView(None, [0.5], [0.25])
    weak = BatchView(AugmentConfig(degrees=degrees, noise=0.1), [0.5], [0.25])
    ctx = RunContext(images, 3, torch.device("cpu"), 0, Views(raw, weak, weak), EventBus([]),
                     build_backbone=lambda: nn.Flatten(), build_head=lambda d: nn.Linear(d, 3), feature_store=store)
    ctx.data_fingerprint = f"images-{seed_images}"
    return ctx


def test_a_hit_reads_what_a_miss_encoded_and_changes_miss(tmp_path: Path) -> None:
    store = FeatureCache(tmp_path / "features")
    module = Counting()
    first = _ctx(store).encode_copies(module, "weak", 3, 2, 7)
    assert first.shape == (3, 40, 5) and module.images == 3 * 40 and (store.hits, store.misses) == (0, 1)
    again = _ctx(store).encode_copies(module, "weak", 3, 2, 7)
    assert torch.equal(first, again) and module.images == 3 * 40 and store.hits == 1  # read, not encoded
    assert not torch.equal(first[0], first[1])  # the copies are different augmentations
    changes = {
        "weights": lambda: _ctx(store).encode_copies(Counting(scale=2.0), "weak", 3, 2, 7),
        "view settings": lambda: _ctx(store, degrees=20.0).encode_copies(module, "weak", 3, 2, 7),
        "images": lambda: _ctx(store, seed_images=1).encode_copies(module, "weak", 3, 2, 7),
        "copies": lambda: _ctx(store).encode_copies(module, "weak", 2, 2, 7),
        "draws": lambda: _ctx(store).encode_copies(module, "weak", 3, 2, 8),
    }
    for why, call in changes.items():
        misses = store.misses
        call()
        assert store.misses == misses + 1, f"a change of {why} must not read the cached copies"
    assert len(list((tmp_path / "features").glob("*.pt"))) == 1 + len(changes)


def test_without_a_store_nothing_is_kept(tmp_path: Path) -> None:
    ctx = _ctx(FeatureCache(tmp_path / "features"))
    ctx.feature_store = None
    module = Counting()
    ctx.encode_copies(module, "weak", 2, 1)
    ctx.encode_copies(module, "weak", 2, 1)
    assert module.images == 2 * 2 * 40 and not (tmp_path / "features").exists()


def _fetch_in_process(root: str, marks: str) -> None:
    def make() -> torch.Tensor:
        with open(marks, "a") as fh:
            fh.write("encoded\n")
        import time

        time.sleep(0.5)  # long enough that the other process asks while this one encodes
        return torch.arange(6.0)

    FeatureCache(Path(root)).fetch("shared-key", make)


def test_concurrent_processes_encode_a_key_once(tmp_path: Path) -> None:
    marks = tmp_path / "marks.txt"
    context = mp.get_context("spawn")
    procs = [context.Process(target=_fetch_in_process, args=(str(tmp_path / "f"), str(marks))) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=600)
        assert p.exitcode == 0
    assert marks.read_text().count("encoded") == 1
    assert torch.equal(FeatureCache(tmp_path / "f").fetch("shared-key", lambda: torch.zeros(1)), torch.arange(6.0))

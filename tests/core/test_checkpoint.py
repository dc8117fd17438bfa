"""Atomic checkpoint writes and safe, clear-failing reads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from toolkit.files import CheckpointError, load_safe, save_atomic


class Evil:
    def __reduce__(self):  # noqa: D105 - a pickle that would run code if loaded unsafely
        return (os.system, ("echo pwned",))


def test_roundtrip_and_no_temp_files_left(tmp_path: Path) -> None:
    path = save_atomic({"w": torch.arange(3)}, tmp_path / "a" / "c.pt")
    assert torch.equal(load_safe(path)["w"], torch.arange(3))
    assert [p.name for p in path.parent.iterdir()] == ["c.pt"]


def test_truncated_file_is_a_clear_error(tmp_path: Path) -> None:
    path = save_atomic({"w": torch.randn(100)}, tmp_path / "c.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=str(path)):
        load_safe(path)


def test_code_carrying_pickle_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, path)
    with pytest.raises(CheckpointError, match="unsafe"):
        load_safe(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_safe(tmp_path / "none.pt")


def test_failed_write_keeps_previous(tmp_path: Path) -> None:
    path = save_atomic({"v": 1}, tmp_path / "c.pt")

    class Boom:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(Exception):
        save_atomic({"v": Boom()}, path)
    assert load_safe(path) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]

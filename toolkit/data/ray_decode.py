"""`[data] decode = "ray"`: an image folder decoded by Ray Data tasks, across a cluster's machines.

One machine's cores decode a folder at their speed (toolkit/data/image_folder.py); on a Ray cluster the same
work fans out to every node. Each task reads a block of files with the torch-free decoder (pixels.read_chunk)
and sends back one buffer; blocks come back in file order (Ray Data's preserve_order), so the result, the
unreadable files and their order are exactly those of a local decode. Ray joins the cluster named by
RAY_ADDRESS (as `ray start`/`ray submit` set it), or starts a local instance; a Ray already initialised in this
process is used as it is. Optional: ray[data] is imported only when this backend is chosen.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from toolkit.data.pixels import Size, read_chunk
from toolkit.errors import UserError


def _read_block(row: dict[str, Any], size: Size, channels: int) -> dict[str, Any]:
    """One Ray Data row: a block of file paths in, its pixels (raw bytes) and failures out."""
    block, failures = read_chunk(json.loads(row["files"]), size, channels)
    return {"pixels": block.tobytes(), "count": len(block), "failures": json.dumps(failures)}


def ray_data(option: str, alternative: str) -> Any:
    """Ray Data, ready for ordered pipelines: imported (one line naming `option` and its `alternative` when it is
    missing), Ray joined or started (RAY_ADDRESS, else local; an initialised Ray is kept), results in order."""
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise UserError(f'{option} needs Ray Data ({exc.name} is missing): pip install "ray[data]", '
                        f"or use {alternative}") from None
    if not ray.is_initialized():
        ray.init(logging_level="WARNING", log_to_driver=False, include_dashboard=False)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    return ray.data


def decoded_blocks(tasks: list[list[Path]], size: Size, channels: int) -> Iterator[tuple[np.ndarray, list]]:
    """(readable images uint8 [n, C, H, W], [(offset, reason)]) per block of files, in order, decoded by Ray."""
    data = ray_data('[data] decode = "ray"', 'decode = "processes"')
    rows = [{"files": json.dumps([str(f) for f in task])} for task in tasks]
    blocks = data.from_items(rows, override_num_blocks=max(1, len(rows))).map(
        _read_block, fn_kwargs={"size": tuple(size), "channels": channels})
    for row in blocks.iter_rows():
        pixels = np.frombuffer(row["pixels"], dtype=np.uint8).reshape((int(row["count"]), channels, *size))
        yield pixels, [tuple(f) for f in json.loads(row["failures"])]

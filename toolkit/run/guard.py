"""Name the plugin, stage and epoch when a plugin raises, instead of a bare traceback from its depths."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from toolkit.errors import TrainingError, UserError
from toolkit.api.slots import Plugin


@contextmanager
def plugin_call(stage: str, plugin: Plugin, epoch: int | None = None, method: str | None = None) -> Iterator[None]:
    """Re-raise any plugin failure as a TrainingError naming stage, epoch, slot, plugin and method."""
    try:
        yield
    except (TrainingError, UserError):
        raise
    except Exception as exc:  # noqa: BLE001 - every plugin failure gets its name attached
        when = f"stage {stage}" + (f", epoch {epoch}" if epoch is not None else "")
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        where = f" in {method}()" if method else ""
        raise TrainingError(f"{when}: {plugin.slot} plugin '{plugin.name}' raised {type(exc).__name__}{where}: "
                            f"{first}") from exc

"""A failed run's full traceback, kept in its folder as traceback.txt.

The terminal shows a failure as one line (stage, epoch, plugin); the frames behind it (the plugin's own,
chained causes included) go to RunFolder.traceback, which the MLflow run keeps as an artifact and
`toolkit run --traceback` prints.
"""

from __future__ import annotations

import traceback
from pathlib import Path

_SAVED_AT = "toolkit_traceback_file"  # attribute set on an exception whose traceback was saved


def format_failure(error: BaseException) -> str:
    """The full traceback of `error`, with its chained causes, as Python prints it."""
    return "".join(traceback.format_exception(type(error), error, error.__traceback__))


def save_traceback(error: BaseException, path: str | Path) -> Path:
    """Write `error`'s traceback to `path` and remember the path on the exception (see `saved_traceback`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(format_failure(error), encoding="utf-8")
    try:
        setattr(error, _SAVED_AT, path)
    except AttributeError:  # an exception type without a __dict__
        pass
    return path


def saved_traceback(error: BaseException) -> Path | None:
    """Where the run that raised `error` saved its traceback, if it did (the CLI names the file)."""
    path = getattr(error, _SAVED_AT, None)
    return path if isinstance(path, Path) and path.is_file() else None

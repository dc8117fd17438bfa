"""`--tracking-fallback local`: log to a SQLite store inside the run's output folder when the MLflow
tracking server is unreachable, instead of failing before training.

Opt-in on purpose: by default an unreachable server stops the run (exit 2), so results never end up
somewhere the user did not expect. With the fallback the run says in one line where they went.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable

from toolkit.errors import UserError
from toolkit.run.folder import RunFolder
from toolkit.track.store import probe_server, unreachable_reason

FALLBACK_ENV = "TOOLKIT_TRACKING_FALLBACK"
MODES = ("fail", "local")

Notify = Callable[[str], None]


def fallback_mode(value: str | None) -> str:
    """The option's value, else $TOOLKIT_TRACKING_FALLBACK, else 'fail'; anything else is a user error."""
    mode = (value or os.environ.get(FALLBACK_ENV) or "fail").strip().lower()
    if mode not in MODES:
        source = "--tracking-fallback" if value else FALLBACK_ENV
        raise UserError(f"{source}: unknown value {mode!r}; use 'fail' (default) or 'local'")
    return mode


def local_store(output_dir: str | Path) -> tuple[str, str]:
    """(tracking URI, artifact root) of the fallback store in `output_dir`."""
    folder = RunFolder(Path(output_dir).resolve())
    return f"sqlite:///{folder.local_store}", folder.local_artifacts.as_uri()


def open_hint(uri: str) -> str:
    """How to browse a store: the command to paste."""
    return f"MLFLOW_TRACKING_URI={uri} toolkit ui  (or: mlflow ui --backend-store-uri {uri})"


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def resolve_store(uri: str, artifact_root: str | None, mode: str, output_dir: str | Path, *, resuming: bool = False,
                  notify: Notify | None = None) -> tuple[str, str | None]:
    """The store a run logs to: `uri` when its server answers (or it is no server). With mode 'local',
    the output folder's SQLite store when the server does not answer, or when the run being resumed
    already logged there (a run stays in one store). Mode 'fail' keeps the one-line fail-fast error."""
    say = notify or _stderr
    local_uri, local_artifacts = local_store(output_dir)
    if mode == "local" and resuming and RunFolder(output_dir).local_store.is_file():
        say(f"resuming in the local MLflow store {RunFolder(Path(output_dir).resolve()).local_store}; open it with: "
            f"{open_hint(local_uri)}")
        return local_uri, local_artifacts
    if mode != "local":
        probe_server(uri)
        return uri, artifact_root
    reason = unreachable_reason(uri)
    if reason is None:
        return uri, artifact_root
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    say(f"MLflow server {uri} is unreachable ({reason}): logging this run to "
        f"{RunFolder(Path(output_dir).resolve()).local_store} instead; open it with: {open_hint(local_uri)}")
    return local_uri, local_artifacts

"""Where a run came from, as MLflow's own provenance tags: who ran it, which recipe, and the git commit
(with a dirty flag) of the repository that holds the recipe, or else of the toolkit's own checkout.

A table that cannot be reproduced is the complaint users make most about papers' code; a run that records
the exact commit and whether the tree had uncommitted changes can be traced back."""

from __future__ import annotations

import getpass
import subprocess
from functools import lru_cache
from pathlib import Path


def _git(folder: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


@lru_cache(maxsize=16)
def git_state(folder: str) -> tuple[str, bool] | None:
    """(commit, dirty) of the git work tree holding `folder`; None outside one or without git."""
    path = Path(folder)
    commit = _git(path, "rev-parse", "HEAD")
    if not commit:
        return None
    status = _git(path, "status", "--porcelain", "--untracked-files=no")
    return commit, bool(status)


def provenance_tags(recipe_source: str) -> dict[str, str]:
    """mlflow.user, mlflow.source.name/type, mlflow.source.git.commit and git_dirty (when in a git tree)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        user = "unknown"
    tags = {"mlflow.user": user, "mlflow.source.name": recipe_source, "mlflow.source.type": "LOCAL"}
    recipe_dir = Path(recipe_source).resolve().parent
    state = git_state(str(recipe_dir)) if recipe_dir.is_dir() else None
    if state is None:
        state = git_state(str(Path(__file__).resolve().parent))  # the toolkit's own checkout
    if state is not None:
        tags["mlflow.source.git.commit"], dirty = state[0], state[1]
        tags["git_dirty"] = str(dirty).lower()
    return tags

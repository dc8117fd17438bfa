"""User-facing errors: each becomes one line on the terminal and exit code 2, never a traceback."""

from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix (bad recipe, missing data, unknown plugin)."""

    exit_code = 2


class RecipeError(UserError):
    """A recipe problem, located by file, section and key."""

    def __init__(self, message: str, file: str | None = None, section: str | None = None, key: str | None = None):
        self.file, self.section, self.key, self.detail = file, section, key, message
        where = file or "<recipe>"
        if section:
            where += f": [{section}]"
        if key:
            where += f" {key}"
        super().__init__(f"{where}: {message}")


class DataNotFoundError(UserError):
    """Data set files are missing; the message says where we looked and how to get them."""


class PluginError(UserError):
    """A plugin could not be found, loaded or constructed."""


class TrainingError(Exception):
    """Training diverged or a plugin failed; names the stage, epoch and culprit."""


class CheckpointMismatch(UserError):
    """A checkpoint does not fit the recipe it is resumed with."""

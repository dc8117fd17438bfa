"""Every command's --help prints its text as written: recipe tables such as [tune] or [tune.space] cited
in help strings must not be swallowed as rich markup (they were, for `toolkit tune --help`)."""

from __future__ import annotations

import re

from typing import Any

import typer
from typer.testing import CliRunner

from toolkit.commands.app import app


def _commands(group: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """(path, command) of every command under `group` (typer vendors click: duck-typed)."""
    found = []
    for name, cmd in group.commands.items():
        found.append(((*path, name), cmd))
        if hasattr(cmd, "commands"):
            found += _commands(cmd, (*path, name))
    return found


def test_help_keeps_every_bracketed_recipe_table() -> None:
    root = typer.main.get_command(app)
    checked = []
    for path, cmd in _commands(root):
        texts = [cmd.help or ""] + [getattr(p, "help", None) or "" for p in cmd.params]
        wanted = {m for t in texts for m in re.findall(r"\[[a-z_.*]+\]", t)}
        if not wanted:
            continue
        result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "300"})
        assert result.exit_code == 0, result.output
        flat = " ".join(result.output.split())
        for table in wanted:
            assert table in flat, f"toolkit {' '.join(path)} --help lost {table}"
        checked.append(path)
    assert ("tune",) in checked  # it cites [tune] and [tune.space]

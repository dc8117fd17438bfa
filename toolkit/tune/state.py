"""A search's own folder and the state it keeps there, typed, so a resumed search reads back what it wrote.

Search folder layout (DIR): search_state.json (parent run, metric, the recipe searched), ray/ (Ray Tune's
experiment state, what `--resume` restores), trials/<trial_id>/ (each trial's run folder), trials.json, best.toml.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from toolkit.errors import UserError

Status = Literal["running", "finished", "interrupted"]


@dataclass(frozen=True)
class SearchFolder:
    root: Path

    @property
    def state(self) -> Path:
        return self.root / "search_state.json"

    @property
    def ray(self) -> Path:
        return self.root / "ray"

    @property
    def trials(self) -> Path:
        return self.root / "trials"

    @property
    def trials_table(self) -> Path:
        return self.root / "trials.json"

    @property
    def best_recipe(self) -> Path:
        return self.root / "best.toml"


@dataclass
class SearchState:
    """What a search needs to continue or be summarised: written at its start, its status at its end."""

    parent_run_id: str
    metric: str
    mode: Literal["max", "min"]
    recipe: dict[str, Any]  # the resolved recipe, [tune] included
    source: str  # the recipe file searched
    mlflow_uri: str
    status: Status = "running"

    def write(self, folder: SearchFolder) -> None:
        folder.root.mkdir(parents=True, exist_ok=True)
        tmp = folder.state.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(folder.state)

    @classmethod
    def read(cls, folder: SearchFolder) -> "SearchState":
        if not folder.state.is_file():
            raise UserError(f"--resume: {folder.root} holds no search ({folder.state.name} missing); pass the "
                            "--output-dir of the interrupted search")
        data = json.loads(folder.state.read_text())
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    @property
    def base_recipe(self) -> dict[str, Any]:
        """The recipe without its [tune] section: what every trial starts from."""
        return {k: v for k, v in self.recipe.items() if k != "tune"}

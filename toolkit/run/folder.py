"""The layout of a run's output folder, in one place: every module that reads or writes a file of a run
(engine, artifacts, trackers, journals, seeds, searches, predict) takes its path from `RunFolder`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: The files a finished run leaves at the top of its folder that trackers upload (plots only with labels).
RESULT_FILES = ("recipe.toml", "summary.json", "reliability.png", "reliability_clu.png", "confusion.png",
                "predictions.npy", "confidences.npy", "traceback.txt", "k_estimate.png")


@dataclass(frozen=True)
class RunFolder:
    """Paths inside one run's output folder (`toolkit run -o DIR`, a seed's `DIR/seed-<s>`, a trial's folder)."""

    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    # what the engine writes
    @property
    def state(self) -> Path:
        """run_state.json: status (running/finished/failed/interrupted), MLflow run id, recipe file."""
        return self.root / "run_state.json"

    @property
    def last_checkpoint(self) -> Path:
        """After every self-labeling epoch: what `--resume` continues from."""
        return self.root / "checkpoints" / "last.pt"

    @property
    def final_checkpoint(self) -> Path:
        """The finished model with what `toolkit predict` needs to rebuild it."""
        return self.root / "checkpoints" / "final.pt"

    @property
    def stage_points(self) -> Path:
        """Resume points of long plugin stages (one file per stage)."""
        return self.root / "checkpoints" / "stages"

    @property
    def artifacts(self) -> Path:
        """Files plugins write to keep with the run (figures, generated samples)."""
        return self.root / "artifacts"

    @property
    def recipe(self) -> Path:
        return self.root / "recipe.toml"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def predictions(self) -> Path:
        return self.root / "predictions.npy"

    @property
    def confidences(self) -> Path:
        """The final prediction's confidence per image (max probability), beside predictions.npy."""
        return self.root / "confidences.npy"

    @property
    def traceback(self) -> Path:
        """The full traceback of a failed run."""
        return self.root / "traceback.txt"

    def file(self, name: str) -> Path:
        """A top-level result file by name (one of RESULT_FILES)."""
        return self.root / name

    # what trackers keep beside the run
    @property
    def logged_steps(self) -> Path:
        """Per-metric high-water marks of what reached MLflow (a resumed run logs each step once)."""
        return self.root / "mlflow_steps.json"

    @property
    def journal(self) -> Path:
        """A search trial's tracking events, replayed into MLflow by the search's driver."""
        return self.root / "tracking.jsonl"

    @property
    def child_state(self) -> Path:
        """The driver's bookkeeping of a trial's MLflow child run (run id, journal offset)."""
        return self.root / "mlflow_child.json"

    @property
    def placement_group(self) -> Path:
        """A data-parallel trial's Ray placement group id, for the driver to release."""
        return self.root / "placement_group.id"

    @property
    def local_store(self) -> Path:
        """`--tracking-fallback local`: the run's own SQLite MLflow store."""
        return self.root / "mlflow.db"

    @property
    def local_artifacts(self) -> Path:
        return self.root / "mlartifacts"

    # several runs under one folder
    def seed(self, seed: int) -> "RunFolder":
        """`--seeds`: the folder of one seed's run."""
        return RunFolder(self.root / f"seed-{seed}")

    @property
    def seeds_state(self) -> Path:
        return self.root / "seeds_state.json"

    @property
    def seeds_summary(self) -> Path:
        return self.root / "seeds_summary.json"

    def is_finished(self) -> bool:
        """Whether the run in this folder ended normally (its summary is complete)."""
        import json

        return (self.state.is_file() and self.summary.is_file()
                and json.loads(self.state.read_text()).get("status") == "finished")

"""`toolkit plugins new`: write a ready-to-install plugin package for one slot.

The package has a pyproject with the entry point, the plugin class with an options model, and a test
that runs the plugin through the real engine on tiny synthetic data.
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path

from toolkit import API_VERSION
from toolkit.errors import UserError
from toolkit.api.slots import SLOT_BASES, SLOTS

_BODIES = {
    "pretrain": '''    def pretrain(self, ctx: RunContext, backbone: nn.Module) -> PretrainResult:
        """Train `backbone` here (ctx.batches / ctx.view give shuffled augmented batches)."""
        for epoch in range(1, self.options.epochs + 1):
            ctx.log_epoch("pretrain", epoch, {"loss": 0.0})
        return PretrainResult(backbone)
''',
    "head_init": '''    def init_head(self, ctx: RunContext, backbone: nn.Module, features: torch.Tensor,
                  pretrained_head: nn.Module | None) -> nn.Module:
        """Return a head mapping features [B, D] to logits [B, K]."""
        head = ctx.build_head(int(features.shape[1]))
        with torch.no_grad():
            head.last.weight.mul_(self.options.scale)
        return head
''',
    "selection": '''    def select(self, batch: Batch, confidence: torch.Tensor) -> Selection:
        """Keep the batch rows whose trusted confidence reaches the threshold."""
        conf, labels = confidence.max(dim=1)
        rows = (conf >= self.options.threshold).nonzero(as_tuple=True)[0]
        return Selection(rows=rows, labels=labels[rows])
''',
    "calibration": '''    def predict(self, features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """Final probabilities: temperature-scaled softmax of the clustering head."""
        return (logits.float() / self.options.temperature).softmax(dim=1)
''',
    "generation": '''    def loss(self, batch: Batch, forward: Any) -> dict[str, torch.Tensor]:
        """Extra weighted loss terms from generated samples (none yet)."""
        return {}
''',
}

_OPTIONS = {
    "pretrain": "    epochs: int = Field(1, ge=0)\n",
    "head_init": "    scale: float = Field(1.0, gt=0)\n",
    "selection": "    threshold: float = Field(0.9, gt=0, le=1)\n",
    "calibration": "    temperature: float = Field(1.0, gt=0)\n",
    "generation": "    weight: float = Field(1.0, ge=0)\n",
}

_PLUGIN = '''"""{name}: a `toolkit.{slot}` plugin."""

from __future__ import annotations

from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from toolkit.api import {base}, Batch, PretrainResult, RunContext, Selection


class Options(BaseModel):
    """Recipe options of `{name}`; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")
{options}

class {cls}({base}[Options]):
    """TODO: one line saying what this {slot} strategy does."""

    api_version = ">={major}.0,<{next_major}.0"

{body}'''

_TEST = '''"""Runs `{name}` through the real toolkit engine on tiny synthetic data (toolkit.testing)."""

from __future__ import annotations

from pathlib import Path

from toolkit.testing import find_plugin, run_plugin


def test_plugin_is_found_through_its_entry_point() -> None:
    assert find_plugin("{slot}", "{name}").__name__ == "{cls}"


def test_plugin_runs_end_to_end(tmp_path: Path) -> None:
    result = run_plugin("{slot}", "{name}", tmp_path=tmp_path)
    assert result.mlflow_run.info.status == "FINISHED"
    assert 0.0 <= result.summary["acc"] <= 1.0
    assert result.summary["plugins"]["{slot}"] == "{name}"
'''

_PYPROJECT = '''[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "0.1.0"
description = "A {slot} plugin for deepclust-toolkit"
requires-python = ">=3.11"
dependencies = ["deepclust-toolkit"]

[project.entry-points."toolkit.{slot}"]
{name} = "{pkg}.plugin:{cls}"

[tool.setuptools]
packages = ["{pkg}"]
'''


def _class_name(name: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[_\\-]+", name) if part) + "Plugin"


def scaffold(name: str, slot: str, directory: Path) -> Path:
    """Write the package for plugin `name` of `slot` into `directory/<name>`; return that folder."""
    if slot not in SLOTS:
        raise UserError(f"unknown slot '{slot}'; valid slots: {', '.join(SLOTS)}")
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or keyword.iskeyword(name):
        raise UserError(f"plugin name '{name}' must be lower-case letters, digits and underscores, starting with a letter")
    root = directory / name
    if root.exists():
        raise UserError(f"{root} already exists; choose another name or remove it")
    pkg = f"{name}_plugin"
    cls = _class_name(name)
    major = int(API_VERSION.split(".")[0])
    fields = dict(name=name, slot=slot, pkg=pkg, cls=cls, dist=f"toolkit-{name.replace('_', '-')}",
                  base=SLOT_BASES[slot].__name__, major=major, next_major=major + 1)
    (root / pkg).mkdir(parents=True)
    (root / "tests").mkdir()
    (root / "pyproject.toml").write_text(_PYPROJECT.format(**fields))
    (root / pkg / "__init__.py").write_text(f'"""{name}: a toolkit.{slot} plugin."""\n')
    (root / pkg / "plugin.py").write_text(_PLUGIN.format(options=_OPTIONS[slot], body=_BODIES[slot], **fields))
    (root / "tests" / "test_plugin.py").write_text(_TEST.format(**fields))
    (root / "README.md").write_text(
        f"# {name}\n\nA `toolkit.{slot}` plugin. Install with `pip install -e .`, test with `pytest`, use with\n"
        f"`[{slot}] method = \"{name}\"` in a recipe.\n")
    return root

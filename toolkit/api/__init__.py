"""The plugin API: the only core room a plugin imports (besides the public helpers in toolkit.ops, toolkit.data
and toolkit.nn).

A plugin subclasses one slot base class, declares its options as a pydantic model, and receives only the
types below: a `RunContext` (unlabelled data, views, device, seeded generators, logging, resume points),
per-batch `Batch`es and per-epoch `EpochState`s. It returns explicit outputs (`PretrainResult`, a head
module, `Selection`s, probabilities, loss dictionaries), which the engine checks where it receives them.
Everything here is re-exported from its home module, so `from toolkit.api import SelectionPlugin` is the
stable spelling; tests/core/test_layout.py holds first-party plugins to it.
"""

from __future__ import annotations

from toolkit import API_VERSION
from toolkit.api.context import Batch, EpochState, RunContext, Selection, UnlabeledImages, Views
from toolkit.api.precision import autocast
from toolkit.api.stage_loop import Checkpointed, EpochLoop, Resumable, StageEpoch
from toolkit.api.step_cap import inner_loop
from toolkit.api.slots import (SLOTS, CalibrationPlugin, GenerationPlugin, HeadInitPlugin, NoOptions, Plugin,
                               PretrainPlugin, PretrainResult, SelectionPlugin)
from toolkit.errors import PluginError, TrainingError, UserError
from toolkit.files import load_safe, save_atomic


__all__ = [
    "API_VERSION", "SLOTS",
    "Plugin", "NoOptions", "PretrainPlugin", "PretrainResult", "HeadInitPlugin", "SelectionPlugin",
    "CalibrationPlugin", "GenerationPlugin",
    "RunContext", "Checkpointed", "EpochLoop", "Resumable", "StageEpoch", "Batch", "EpochState", "Selection", "UnlabeledImages", "Views",
    "autocast", "inner_loop", "load_safe", "save_atomic",
    "PluginError", "TrainingError", "UserError",
]

"""Entry-point discovery, lazy loading, API-version checks and `toolkit plugins list`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from toolkit import API_VERSION
from toolkit.errors import PluginError
from toolkit.api.slots import SLOT_BASES, SLOTS
from toolkit.registry.entry_points import check_api_version, discover, find, load

from conftest import ROOT, toolkit_env

EXPECTED = {
    "pretrain": {"none", "simclr"},
    "head_init": {"random", "kmeans_pseudo_label"},
    "selection": {"all", "threshold"},
    "calibration": {"none"},
    "generation": {"none"},
}


def test_first_party_plugins_come_through_entry_points() -> None:
    for slot, names in EXPECTED.items():
        found = {p.name for p in discover(slot)}
        assert names <= found, (slot, found)
        for p in discover(slot):
            if p.name in names:
                assert p.distribution.startswith("deepclust-") and p.distribution != "deepclust-toolkit"
                assert p.target.split(".")[0] == p.distribution.replace("-", "_")  # import name = distribution name
                cls = p.load()
                assert issubclass(cls, SLOT_BASES[slot])


def test_unknown_plugin_lists_valid_names() -> None:
    with pytest.raises(PluginError, match="unknown selection plugin 'nope'; installed: .*threshold"):
        find("selection", "nope")


def test_loading_imports_only_the_chosen_plugin() -> None:
    code = (
        "import sys\n"
        "from toolkit.recipe.loading import validate\n"
        "validate({'pretrain': {'method': 'none'}})\n"
        "print('deepclust_simclr.plugin' in sys.modules, 'deepclust_baseline.pretrain_none' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.split() == ["False", "True"]




def test_api_version_ranges() -> None:
    check_api_version("p", ">=2.0,<3.0")
    with pytest.raises(PluginError, match="supports toolkit API >=3.0"):
        check_api_version("p", ">=3.0")
    with pytest.raises(PluginError, match="supports toolkit API >=1.0,<2.0, but this toolkit provides API " + API_VERSION):
        check_api_version("p", ">=1.0,<2.0")
    with pytest.raises(PluginError, match="unreadable"):
        check_api_version("p", "~1")


def test_plugins_list_json_and_table() -> None:
    out = subprocess.run([sys.executable, "-m", "toolkit.commands.app", "plugins", "list", "--json"], capture_output=True,
                         text=True, cwd=ROOT, env=toolkit_env(), check=True)
    rows = json.loads(out.stdout)
    seen = {(r["slot"], r["name"]) for r in rows}
    for slot, names in EXPECTED.items():
        assert {(slot, n) for n in names} <= seen
    assert all(r["status"] == "ok" and r["version"] for r in rows if r["distribution"].startswith("deepclust-"))
    table = subprocess.run([sys.executable, "-m", "toolkit.commands.app", "plugins", "list"], capture_output=True, text=True,
                           cwd=ROOT, env=toolkit_env(), check=True)
    for slot in SLOTS:
        assert slot in table.stdout
    assert "kmeans_pseudo_label" in table.stdout


def test_plugins_show_keeps_brackets_and_names_types_plainly() -> None:
    from rich.console import Console

    from toolkit.registry.entry_points import describe, type_name

    console = Console(record=True, width=240)
    for block in describe("simclr"):
        console.print(block)
    text = console.export_text()
    # option descriptions cite recipe tables; rich must print them, not read them as markup
    assert "which [views.*] augmentation makes the pairs" in text
    assert "[pretrain.augment]: the pairs' own augmentation" in text
    assert "AugmentConfig | None" in text and "Literal['adam', 'sgd']" in text
    assert type_name(int) == "int" and type_name(list[int]) == "list[int]"

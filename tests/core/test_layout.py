"""The house rules of the code base, read from the source: rooms of the core import each other one way only,
the core never imports a plugin, and plugins reach the core only through its public rooms."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: The core rooms a plugin may import: the plugin API and the public helpers (data sets and views,
#: backbones and heads, k-means / kNN / matching).
PLUGIN_ROOMS = {"toolkit", "toolkit.api", "toolkit.data", "toolkit.nn", "toolkit.ops"}


def _imports(path: Path) -> list[str]:
    """Every module `path` imports, at any depth, except under `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                   for n in ast.walk(node)}
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
    return found


def _room(module: str) -> str:
    """toolkit.run.engine -> run; toolkit.metrics -> metrics; toolkit -> toolkit."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _core_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for path in (ROOT / "toolkit").rglob("*.py"):
        rel = path.relative_to(ROOT / "toolkit")
        source = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        for module in _imports(path):
            if module.startswith("toolkit.") and _room(module) != source:
                graph[source].add(_room(module))
    return graph


def _cycle_through(graph: dict[str, set[str]], start: str) -> list[str] | None:
    stack = [(start, [start])]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        for nxt in graph.get(node, ()):
            if nxt == start:
                return path + [start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, path + [nxt]))
    return None


def test_core_rooms_have_no_import_circles() -> None:
    graph = _core_graph()
    circles = [c for room in sorted(graph) if (c := _cycle_through(graph, room))]
    assert not circles, "import circles between rooms of toolkit/: " + "; ".join(" -> ".join(c) for c in circles)


def test_the_circle_check_finds_a_circle() -> None:
    assert _cycle_through({"run": {"track"}, "track": {"run"}}, "run") == ["run", "track", "run"]
    assert _cycle_through({"run": {"api"}, "api": set()}, "run") is None


def test_core_never_imports_a_plugin() -> None:
    offenders = [f"{p.relative_to(ROOT)}: {m}" for p in (ROOT / "toolkit").rglob("*.py") for m in _imports(p)
                 if m.split(".")[0] == "plugins" or m.startswith("deepclust_")]
    assert not offenders


def test_plugins_import_only_the_public_rooms_of_the_core() -> None:
    sources = [*(ROOT / "plugins").rglob("*.py"),
               *(p for p in (ROOT / "examples").rglob("*.py") if "tests" not in p.parts and "build" not in p.parts)]
    assert len(sources) > 20
    offenders = []
    for path in sources:
        for module in _imports(path):
            if module.split(".")[0] == "toolkit" and ".".join(module.split(".")[:2]) not in PLUGIN_ROOMS:
                offenders.append(f"{path.relative_to(ROOT)}: {module}")
    assert not offenders, "plugins must import toolkit.api (or toolkit.data/nn/ops): " + "; ".join(offenders)


#: Rooms documented as a whole (their files are small, public helpers named by what they hold).
SUMMARISED_ROOMS = {"data", "nn", "ops"}


def test_the_architecture_map_names_every_room_and_module() -> None:
    """docs/architecture.md's map must follow the folders: a new room or module without a line fails."""
    doc = (ROOT / "docs" / "architecture.md").read_text()
    block = doc.split("## Layers", 1)[1].split("Dependencies point one way", 1)[0]
    named = set(re.findall(r"[A-Za-z_]+\.py|[A-Za-z_]+/", block))
    core = ROOT / "toolkit"
    missing = [f"{room.name}/" for room in core.iterdir() if room.is_dir() and room.name != "__pycache__"
               and f"{room.name}/" not in named]
    missing += [str(path.relative_to(core)) for path in core.rglob("*.py") if path.name != "__init__.py"
                and path.parent.name not in SUMMARISED_ROOMS and path.name not in named]
    assert not missing, f"docs/architecture.md does not describe: {', '.join(sorted(missing))}"


PRIVATE_NOTES = re.compile(r"\bspecs? ?(?:section |§ ?|P-?\d|\d)|\(spec\b|\bthe spec'?s?\b", re.IGNORECASE)


def test_no_tracked_file_points_outside_the_project() -> None:
    """The project stands alone: no file names the authors' working copies or their private notes folder."""
    import subprocess

    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    forbidden = ["../" + "shared", "/" + "work/", "/" + "root/", "/" + "home/"]
    offenders = []
    for name in listed.stdout.splitlines():
        path = ROOT / name
        if not path.is_file() or path.suffix in {".png", ".npy", ".pt", ".gz", ".whl"}:
            continue
        text = path.read_text(errors="ignore")
        offenders += [f"{name}: {word}" for word in forbidden if word in text]
        # section or pitfall numbers of the authors' private method notes ("spec 2.5", "spec P-11"): cite the paper
        if name != "tests/core/test_layout.py":  # this file spells the pattern out
            offenders += [f"{name}: {m.group(0)!r}" for m in PRIVATE_NOTES.finditer(text)]
    assert not offenders, offenders

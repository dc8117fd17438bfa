"""The plugin API reference (scripts/build_docs.sh) builds with pdoc, shows every exported name, and has a
docstring for everything a plugin author can reach from `toolkit.api`, so the reference cannot rot silently."""

from __future__ import annotations

import functools
import inspect
import re
import shlex
import warnings
from pathlib import Path

import pdoc
import pdoc.doc
import pdoc.render
import pytest

import toolkit.api

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "build_docs.sh"

#: Public names allowed to go without a docstring (none today); add one here only with a reason.
KNOWN_UNDOCUMENTED: set[str] = set()


def _script_modules() -> list[str]:
    """The module specs scripts/build_docs.sh passes to pdoc (its `modules=(...)` line), so both build the same."""
    match = re.search(r"^modules=\((.*)\)\s*$", SCRIPT.read_text(), re.MULTILINE)
    assert match, f"no `modules=(...)` line in {SCRIPT}"
    return shlex.split(match.group(1))


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory):
    """Build the reference once into a temporary folder; yields (folder, warnings pdoc raised)."""
    out = tmp_path_factory.mktemp("reference")
    pdoc.render.configure(docformat="markdown")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pdoc.pdoc(*_script_modules(), output_directory=out)
    finally:
        pdoc.render.configure()  # pdoc's defaults again: the settings are process-wide
    yield out, [w for w in caught if "pdoc" in w.filename]


def _page(out: Path, module: str) -> Path:
    return out.joinpath(*module.split(".")).with_suffix(".html")


def test_reference_builds(reference) -> None:
    out, pdoc_warnings = reference
    assert not pdoc_warnings, [f"{w.category.__name__}: {w.message}" for w in pdoc_warnings]
    assert (out / "index.html").is_file()
    for spec in _script_modules():
        if not spec.startswith("!"):
            assert _page(out, spec).is_file(), f"no page for {spec}"
    assert not list(out.rglob("_*.html")), "private modules were rendered"


def test_api_page_shows_every_exported_name(reference) -> None:
    out, _ = reference
    html = _page(out, "toolkit.api").read_text()
    missing = [name for name in toolkit.api.__all__ if f'id="{name}"' not in html]
    assert not missing, f"names in toolkit.api.__all__ without an entry on the reference page: {missing}"


def _is_property(cls: pdoc.doc.Class, name: str) -> bool:
    return isinstance(inspect.getattr_static(cls.obj, name, None), (property, functools.cached_property))


def _undocumented_api() -> set[str]:
    """Public classes, functions, methods and properties reachable from toolkit.api.__all__ (including members
    inherited from toolkit classes) whose rendered docstring is empty, as "module.qualname" of their definition."""
    module = pdoc.doc.Module.from_name("toolkit.api")
    found: set[str] = set()
    if not module.docstring.strip():
        found.add("toolkit.api")
    seen: set[tuple[str, str]] = set()

    def visit(member: pdoc.doc.Doc, owner: pdoc.doc.Class | None) -> None:
        origin = member.taken_from
        if origin in seen or not origin[0].startswith("toolkit") or member.name.startswith("_"):
            return
        seen.add(origin)
        checked = isinstance(member, (pdoc.doc.Class, pdoc.doc.Function)) or (
            owner is not None and isinstance(member, pdoc.doc.Variable) and _is_property(owner, member.name))
        if checked and not member.docstring.strip():
            found.add(".".join(origin))
        if isinstance(member, pdoc.doc.Class):
            for child in member.members.values():
                visit(child, member)

    for name in toolkit.api.__all__:
        visit(module.members[name], None)
    return found


def test_no_new_undocumented_api() -> None:
    new = _undocumented_api() - KNOWN_UNDOCUMENTED
    assert not new, f"public API without a docstring (it would show blank in the reference): {sorted(new)}"


def test_every_public_api_name_has_a_docstring() -> None:
    missing = _undocumented_api()
    assert not missing, f"public API without a docstring: {sorted(missing)}"

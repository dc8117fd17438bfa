"""Plugin discovery through entry points, lazy loading, and per-slot lookup.

First-party and third-party plugins come through the same door: the entry-point groups
`toolkit.<slot>`. Only the plugins a recipe names are imported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import EntryPoint, entry_points

from toolkit import API_VERSION
from toolkit.errors import PluginError
from toolkit.api.slots import SLOT_BASES, SLOTS, Plugin


def group_of(slot: str) -> str:
    return f"toolkit.{slot}"


@dataclass(frozen=True)
class PluginInfo:
    """One entry point, known without importing it."""

    slot: str
    name: str
    target: str
    distribution: str
    version: str
    entry_point: EntryPoint

    def load(self) -> type[Plugin]:
        return _load_entry_point(self)


def discover(slot: str | None = None) -> list[PluginInfo]:
    """All entry points of one slot (or every slot), sorted by slot and name. Imports nothing."""
    slots = [slot] if slot else list(SLOTS)
    found: list[PluginInfo] = []
    for s in slots:
        for ep in entry_points(group=group_of(s)):
            dist = getattr(ep, "dist", None)
            found.append(PluginInfo(s, ep.name, ep.value, dist.name if dist else "?", dist.version if dist else "?", ep))
    # One distribution can be seen twice (e.g. an editable install on two sys.path entries): dedupe.
    unique = {(p.slot, p.name, p.target, p.distribution): p for p in found}
    return sorted(unique.values(), key=lambda p: (SLOTS.index(p.slot), p.name))


def names(slot: str) -> list[str]:
    return sorted({p.name for p in discover(slot)})


def find(slot: str, name: str) -> PluginInfo:
    """The entry point named `name` in `slot`; an unknown name or a clash is a PluginError."""
    matches = [p for p in discover(slot) if p.name == name]
    if not matches:
        valid = ", ".join(names(slot)) or "(none installed)"
        raise PluginError(f"unknown {slot} plugin '{name}'; installed: {valid}")
    if len(matches) > 1:
        where = "; ".join(f"{p.target} ({p.distribution} {p.version})" for p in matches)
        raise PluginError(f"{slot} plugin name '{name}' is declared more than once: {where}; uninstall one")
    return matches[0]


def load(slot: str, name: str) -> type[Plugin]:
    """Import the plugin class `name` of `slot` (and only it)."""
    return find(slot, name).load()


@lru_cache(maxsize=None)
def _load_cached(slot: str, name: str, target: str, ep: EntryPoint) -> type[Plugin]:
    try:
        obj = ep.load()
    except Exception as exc:  # a broken plugin must break only recipes that use it
        raise PluginError(f"{slot} plugin '{name}' ({target}) failed to import: {type(exc).__name__}: {exc}") from exc
    base = SLOT_BASES[slot]
    if not (isinstance(obj, type) and issubclass(obj, base)):
        raise PluginError(f"{slot} plugin '{name}' ({target}) is not a subclass of toolkit.api.slots.{base.__name__}")
    check_api_version(f"{slot} plugin '{name}'", getattr(obj, "api_version", ""))
    check_signatures(f"{slot} plugin '{name}' ({target})", obj)
    return obj


#: Methods whose API 2.0 signature grew, with the positional parameters (after self) they must accept.
_SIGNATURES_2_0 = {"select": ("batch", "confidence")}
MIGRATION_HINT = "see 'Migrating from API 1.x' in docs/writing-plugins.md"


def check_signatures(who: str, cls: type) -> None:
    """A plugin written for API 1.x that did not declare its api_version still fails at load time, not mid-run:
    the methods whose signature changed in 2.0 must accept the new arguments."""
    import inspect

    for method, wanted in _SIGNATURES_2_0.items():
        fn = getattr(cls, method, None)
        if fn is None:
            continue
        params = list(inspect.signature(fn).parameters.values())[1:]  # without self
        if any(p.kind is p.VAR_POSITIONAL for p in params):
            continue
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if len(positional) < len(wanted):
            have = ", ".join(p.name for p in positional)
            raise PluginError(f"{who} was written for toolkit API 1.x: {method}({have}) must accept "
                              f"{method}({', '.join(wanted)}) in API {API_VERSION}; {MIGRATION_HINT}")


def _load_entry_point(info: PluginInfo) -> type[Plugin]:
    return _load_cached(info.slot, info.name, info.target, info.entry_point)


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.strip().split("."))


def check_api_version(who: str, spec: str) -> None:
    """Check a plugin's supported range (e.g. '>=1.0,<2.0') against toolkit.API_VERSION."""
    if not spec:
        return
    current = _version_tuple(API_VERSION)
    ops = {">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b, "==": lambda a, b: a == b,
           ">": lambda a, b: a > b, "<": lambda a, b: a < b}
    for clause in spec.split(","):
        clause = clause.strip()
        for op in (">=", "<=", "==", ">", "<"):
            if clause.startswith(op):
                try:
                    wanted = _version_tuple(clause[len(op):])
                except ValueError:
                    raise PluginError(f"{who} declares an unreadable api_version '{spec}'") from None
                width = max(len(wanted), len(current))
                a = current + (0,) * (width - len(current))
                b = wanted + (0,) * (width - len(wanted))
                if not ops[op](a, b):
                    raise PluginError(f"{who} supports toolkit API {spec}, but this toolkit provides API {API_VERSION}"
                                      f"; {MIGRATION_HINT}")
                break
        else:
            raise PluginError(f"{who} declares an unreadable api_version '{spec}'")


@dataclass(frozen=True)
class PluginStatus:
    """A discovered plugin and whether it loads (for `toolkit plugins list`)."""

    info: PluginInfo
    error: str | None
    summary: str


def status_of_all(slot: str | None = None) -> list[PluginStatus]:
    """Load every plugin to report broken ones and name clashes, without raising."""
    infos = discover(slot)
    counts: dict[tuple[str, str], int] = {}
    for p in infos:
        counts[(p.slot, p.name)] = counts.get((p.slot, p.name), 0) + 1
    rows = []
    for p in infos:
        error, summary = None, ""
        try:
            cls = p.load()
            summary = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        except PluginError as exc:
            error = str(exc)
        if counts[(p.slot, p.name)] > 1:
            error = (error + "; " if error else "") + "name declared by more than one entry point"
        rows.append(PluginStatus(p, error, summary))
    return rows


def type_name(annotation: object) -> str:
    """An option's type as a recipe author reads it: `int`, `Literal['adam', 'sgd']`, `AugmentConfig | None`."""
    if isinstance(annotation, type):
        return annotation.__name__
    return re.sub(r"(?:[A-Za-z_]\w*\.)+([A-Za-z_]\w*)", r"\1", str(annotation))


def describe(name: str, slot: str | None = None) -> list[object]:
    """Rich renderables describing plugin `name` (in every slot that has it, or only `slot`)."""
    from rich.markup import escape
    from rich.panel import Panel
    from rich.table import Table

    infos = [p for p in discover(slot) if p.name == name]
    if not infos:
        where = f"slot {slot}" if slot else "any slot"
        raise PluginError(f"no plugin named '{name}' in {where}; see `toolkit plugins list`")
    blocks: list[object] = []
    for info in infos:
        cls = info.load()
        doc = (cls.__doc__ or "").strip() or "(no docstring)"
        head = (f"[bold]{info.name}[/]  slot [cyan]{info.slot}[/]  ({escape(info.target)})\n"
                f"distribution {escape(info.distribution)} {escape(str(info.version))}, "
                f"toolkit API {escape(str(cls.api_version or 'any'))}\n\n{escape(doc)}")
        blocks.append(Panel(head, expand=False))
        table = Table(title=f"options of {info.slot}.{info.name}")
        for col in ("option", "type", "default", "description"):
            table.add_column(col)
        for field_name, field in cls.Options.model_fields.items():
            default = "required" if field.is_required() else repr(field.get_default(call_default_factory=True))
            table.add_row(field_name, escape(type_name(field.annotation)), escape(default),
                          escape(field.description or ""))
        if not cls.Options.model_fields:
            table.add_row("(none)", "", "", "")
        blocks.append(table)
    return blocks

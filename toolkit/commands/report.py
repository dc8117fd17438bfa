"""`toolkit report`: read runs back from the MLflow store and write the paper-style table (and its figure)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from toolkit.errors import UserError


def output_format(path: Path) -> str:
    from toolkit.track.report_tables import SUFFIXES

    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise UserError(f"toolkit report --output {path}: name a .md, .tex or .csv file (the suffix picks the format)")
    return fmt


def make_report(targets: list[str], by: str, fmt: str, outputs: list[Path], plot: Path | None, trials: bool,
                say: Callable[[str], None], note: Callable[[str], None]) -> None:
    """Print the table in `fmt`, write it to each of `outputs` (format by suffix) and the figure to `plot`."""
    from toolkit.track.report import build, collect, parse_by
    from toolkit.track.report_tables import FORMATS, render
    from toolkit.track.store import open_client, tracking_uri

    if fmt not in FORMATS:
        raise UserError(f"toolkit report --format {fmt!r}: choose one of {', '.join(FORMATS)}")
    formats = [output_format(p) for p in outputs]  # every mistake before any work
    keys = parse_by(by)
    uri = tracking_uri()[0]
    try:
        client = open_client(uri)
        runs, left_out = collect(client, targets, trials=trials)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - any store failure: say which store
        raise UserError(f"toolkit report: MLflow store {uri} is unusable: {str(exc).splitlines()[0][:200]}") from None
    report = build(runs, keys, left_out)
    say(render(report, fmt).rstrip("\n"))
    for path, out_fmt in zip(outputs, formats):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(report, out_fmt), encoding="utf-8")
        note(f"wrote {path}")
    if plot is not None:
        from toolkit.track.report_plot import accuracy_vs_calibration_png

        shown = accuracy_vs_calibration_png(report, plot)
        note(f"wrote {plot} ({shown} rows with ACC and ECE)")

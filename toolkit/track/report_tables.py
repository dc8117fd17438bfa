"""The report as text: Markdown (README, a PR), LaTeX (a paper, booktabs) or CSV (a spreadsheet, other tools).

Cells read `mean ± std` over the group's runs (std left out for a single run); the best mean per column of a
section is bold in Markdown and LaTeX. CSV carries mean and std in their own columns and no marking.
"""

from __future__ import annotations

import csv
import io

from toolkit.track.report import COLUMNS, Report, Row

FORMATS = ("md", "latex", "csv")
#: File suffix -> format, for `--output`.
SUFFIXES = {".md": "md", ".markdown": "md", ".tex": "latex", ".csv": "csv"}


def render(report: Report, fmt: str) -> str:
    return {"md": markdown, "latex": latex, "csv": as_csv}[fmt](report)


def _cell(row: Row, key: str, digits: int, pm: str) -> str:
    if key not in row.mean:
        return "-"
    mean, std = row.mean[key], row.std.get(key)
    text = f"{mean:.{digits}f}"
    return f"{text}{pm}{std:.{digits}f}" if std is not None else text


def _digits(key: str) -> int:
    return 1 if key == "seconds" else 3


def _left_out(report: Report) -> str:
    return "; ".join(f"{n} {why}" for why, n in report.left_out.items())


def markdown(report: Report) -> str:
    head = [*report.by, "runs", *(title for _, title, _ in COLUMNS)]
    lines: list[str] = []
    for title, rows in report.sections():
        best = report.best(rows)
        lines += [f"**{title}**", "", "| " + " | ".join(head) + " |",
                  "|" + "|".join("---" if i < len(report.by) else "---:" for i in range(len(head))) + "|"]
        for row in rows:
            cells = [k.replace("|", "\\|") for k in row.keys] + [str(len(row.runs))]
            for key, _, _ in COLUMNS:
                text = _cell(row, key, _digits(key), " ± ")
                cells.append(f"**{text}**" if key in best and row.mean.get(key) == best[key] else text)
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    if not lines:
        lines = ["no finished runs to report", ""]
    if report.left_out:
        lines.append(f"left out: {_left_out(report)}")
    lines.append("mean ± sample std (ddof=1) over each row's runs; bold: best of its section; time = wall time")
    return "\n".join(lines) + "\n"


def _tex(text: str) -> str:
    """Text safe in a LaTeX cell (a recipe name's underscores, an override's braces)."""
    text = text.replace("\\", "\0")  # first, so the escapes below keep their backslashes
    for char, escaped in (("&", r"\&"), ("%", r"\%"), ("$", r"\$"), ("#", r"\#"), ("_", r"\_"), ("{", r"\{"),
                          ("}", r"\}"), ("~", r"\textasciitilde{}"), ("^", r"\textasciicircum{}")):
        text = text.replace(char, escaped)
    return text.replace("\0", r"\textbackslash{}")


def latex(report: Report) -> str:
    width = len(report.by) + 1 + len(COLUMNS)
    lines = [r"% needs \usepackage{booktabs}", r"\begin{tabular}{" + "l" * len(report.by) + "r" * (width - len(report.by)) + "}",
             r"\toprule", " & ".join([*(_tex(k) for k in report.by), "runs", *(_tex(t) for _, t, _ in COLUMNS)])
             + r" \\"]
    for title, rows in report.sections():
        best = report.best(rows)
        lines += [r"\midrule", rf"\multicolumn{{{width}}}{{l}}{{\emph{{{_tex(title)}}}}} \\"]
        for row in rows:
            cells = [_tex(k) for k in row.keys] + [str(len(row.runs))]
            for key, _, _ in COLUMNS:
                text = _cell(row, key, _digits(key), r" $\pm$ ")
                cells.append(rf"\textbf{{{text}}}" if key in best and row.mean.get(key) == best[key] else text)
            lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def as_csv(report: Report) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["section", *report.by, "runs", *(f"{k}_{s}" for k, _, _ in COLUMNS for s in ("mean", "std"))])
    for title, rows in report.sections():
        for row in rows:
            values = []
            for key, _, _ in COLUMNS:
                std = row.std.get(key)
                values += [f"{row.mean[key]:.6g}" if key in row.mean else "", "" if std is None else f"{std:.6g}"]
            writer.writerow([title.split(" ")[0], *row.keys, len(row.runs), *values])
    return buffer.getvalue()

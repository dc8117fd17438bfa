"""`toolkit report`: grouping, mean ± std, best marking, oracle apart, the three formats and the figure; and the
command itself on a real MLflow store holding `--seeds 0,1,2` runs of two recipes."""

from __future__ import annotations

import csv
import io
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from toolkit.track.report import RunFacts, build, method_and_seed, parse_by
from toolkit.track.report_plot import accuracy_vs_calibration_png
from toolkit.track.report_tables import as_csv, latex, markdown

from conftest import toolkit_env


def facts(name: str, seed: int, acc: float, ece: float, dataset: str = "digits", oracle: bool = False) -> RunFacts:
    return RunFacts(f"id-{name}-{seed}", name, str(seed), {"dataset": dataset, "plugin.calibration": name[:3]},
                    {"train.lr": "0.1"}, {"acc": acc, "nmi": acc - 0.1, "ece": ece, "seconds": 10.0 + seed}, oracle)


def test_method_and_seed_from_run_names() -> None:
    assert method_and_seed("cdc_digits-s2") == ("cdc_digits", "2")
    assert method_and_seed("cdc_digits-s12 lr=0.01,epochs=3") == ("cdc_digits lr=0.01,epochs=3", "12")
    assert method_and_seed("tune-cdc") == ("tune-cdc", "-")
    assert parse_by(" method, dataset ,") == ("method", "dataset")


def test_rows_hold_mean_and_sample_std_and_mark_the_best() -> None:
    runs = [facts("cdc", s, a, e) for s, a, e in ((0, 0.8, 0.1), (1, 0.9, 0.2), (2, 0.7, 0.3))]
    runs += [facts("drc", s, a, e) for s, a, e in ((0, 0.6, 0.05), (1, 0.65, 0.07))]
    runs += [facts("cdc", 0, 0.99, 0.01, oracle=True), facts("cdc", 0, 0.5, 0.4, dataset="lfw")]
    report = build(runs, ("method", "dataset"), {"parent runs (seeds, searches)": 2})
    rows = {r.keys: r for r in report.label_free}
    assert set(rows) == {("cdc", "digits"), ("drc", "digits"), ("cdc", "lfw")}
    cdc = rows[("cdc", "digits")]
    assert cdc.mean["acc"] == pytest.approx(0.8) and cdc.std["acc"] == pytest.approx(statistics.stdev([0.8, 0.9, 0.7]))
    assert rows[("cdc", "lfw")].std["acc"] is None  # one run: no spread
    assert [r.keys for r in report.oracle] == [("cdc", "digits")]  # the oracle never competes with the rest
    assert report.best(report.label_free) == {"acc": pytest.approx(0.8), "nmi": pytest.approx(0.7),
                                              "ece": pytest.approx(0.06), "seconds": pytest.approx(10.0)}
    md = markdown(report)
    assert "| cdc | digits | 3 | **0.800 ± 0.100** |" in md  # best ACC in bold, with its std
    assert "**0.060 ± 0.014**" in md  # lowest ECE in bold
    assert "0.990" in md.split("oracle")[1] and "left out: 2 parent runs" in md
    tex = latex(report)
    assert r"\textbf{0.800 $\pm$ 0.100}" in tex and r"\multicolumn{8}{l}{\emph{oracle (chosen with ground truth)}}" in tex
    table = list(csv.DictReader(io.StringIO(as_csv(report))))
    assert len(table) == 4 and table[0]["section"] == "label-free" and float(table[0]["acc_std"]) == pytest.approx(0.1)
    by_plugin = build(runs, ("plugin.calibration", "train.lr"), {})  # any tag or param groups too
    assert sorted(r.keys for r in by_plugin.label_free) == [("cdc", "0.1"), ("drc", "0.1")]


def test_latex_escapes_names() -> None:
    report = build([facts("my_method {x} 50%", 0, 0.5, 0.1)], ("method",), {})
    assert r"my\_method \{x\} 50\%" in latex(report)


def test_plot_places_rows_with_acc_and_ece(tmp_path: Path) -> None:
    runs = [facts("cdc", s, 0.8 + s / 100, 0.1) for s in range(3)] + [facts("drc", 0, 0.6, 0.2, oracle=True)]
    runs.append(RunFacts("x", "unlabelled", "0", {"dataset": "folder"}, {}, {"seconds": 3.0}, False))
    assert accuracy_vs_calibration_png(build(runs, ("method",), {}), tmp_path / "p.png") == 2
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def _cli(args: list[str], cwd: Path, uri: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "toolkit.commands.app", *args], capture_output=True, text=True,
                          cwd=cwd, env=toolkit_env(MLFLOW_TRACKING_URI=uri), timeout=1800)


@pytest.mark.xdist_group("seeds_store")
def test_report_on_seeds_runs_of_two_recipes(tmp_path: Path, seeds_store: dict,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    uri = seeds_store["uri"]
    proc = _cli(["report", "-o", str(tmp_path / "t.md"), "-o", str(tmp_path / "t.tex"), "--plot",
                 str(tmp_path / "t.png")], tmp_path, uri)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name, accs in seeds_store["accs"].items():  # each recipe's row: mean ± std of its three seeds' ACC
        text = f"{statistics.fmean(accs):.3f} ± {statistics.stdev(accs):.3f}"
        row = next(line for line in proc.stdout.splitlines() if line.startswith(f"| {name} "))
        assert "| digits | 3 | " in row and text in row, proc.stdout
    assert "2 parent runs" in proc.stdout  # the seeds' parents are not rows
    assert (tmp_path / "t.md").read_text() == proc.stdout
    assert r"$\pm$" in (tmp_path / "t.tex").read_text() and (tmp_path / "t.png").stat().st_size > 1000
    parent = _cli(["report", seeds_store["parents"][0], "--format", "csv", "--by", "method,seed"], tmp_path, uri)
    assert parent.returncode == 0 and len(parent.stdout.strip().splitlines()) == 4, parent.stdout  # header + 3 seeds
    proc = _cli(["report", "no-such-experiment"], tmp_path, uri)  # a user mistake: one line, exit 2
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "no-such-experiment" in proc.stderr
    from toolkit.commands.report import make_report
    from toolkit.errors import UserError

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)

    for args in ((["no-such-experiment"], "md", []), ([], "md", [tmp_path / "t.pdf"]), ([], "x", [])):
        with pytest.raises(UserError):  # the same one-line errors, in process
            make_report(args[0], "method,dataset", args[1], args[2], None, False, print, print)

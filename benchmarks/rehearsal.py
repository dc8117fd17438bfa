"""Rehearse paper recipes at their real data size on this machine: memory, time per step, projected wall time.

    python benchmarks/rehearsal.py recipes/cdc_cifar10.toml            # one recipe
    python benchmarks/rehearsal.py --paper                              # every paper recipe
    python benchmarks/rehearsal.py recipes/gcc_cifar10.toml --max-steps 3 --set train.batch_size=128

Each recipe runs in its own process (`toolkit run`, so peak memory is the recipe's own) on generated images of
the real shape (`[data] synthetic_like`: 60,000 x 3 x 32 x 32 for CIFAR-10, 13,000 x 3 x 96 x 96 for STL-10, ...),
with `[train] max_steps` (toolkit/api/step_cap.py): every stage's epochs stop after a few steps, every stage runs
at most two epochs, every whole-data pass computes a few chunks. The run writes what it measured per stage
(rehearsal.json) and this script prints, per stage: peak host memory, median time per training step, steps per
epoch and epochs at full size, whole-data passes, and the projected wall time of the full stage on this machine:

    epochs x (steps/epoch x time/step + the last rehearsed epoch's passes at full size and other work)
    + the stage's one-off work (its first epoch's extra time, passes before the first epoch at full size)

(plus, for GCC, its generator stages times the rounds of the full recipe). The GPU column is the same projection
from a rehearsal of the same recipe run on a GPU (`--device cuda --keep DIR` there, as benchmarks/gpu/check.sh
does; then `--gpu-runs DIR` here); without one it says "not measured".
A recipe passes when its run ends (no out-of-memory, shape error or stage that never ends) within --timeout.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Recipe stem suffix -> the data set whose shape it is rehearsed on.
LIKE = {"cifar10": "cifar10", "cifar10_split": "cifar10", "cifar20": "cifar20", "stl10": "stl10",
        "imagenet10": "imagenet10", "imagenet_dogs": "imagenet_dogs", "tiny_imagenet": "tiny_imagenet"}


def paper_recipes() -> list[Path]:
    """Every recipe that reproduces a paper's table (the ones named after a data set the papers use)."""
    out = []
    for path in sorted((ROOT / "recipes").glob("*.toml")):
        stem = path.stem.split("_", 1)
        if len(stem) == 2 and stem[1] in LIKE:
            out.append(path)
    return out


def overrides(recipe: Path, max_steps: int) -> list[str]:
    """The --set values that turn a paper recipe into its rehearsal."""
    sets = [f"train.max_steps={max_steps}"]
    suffix = recipe.stem.split("_", 1)[1] if "_" in recipe.stem else ""
    if suffix in LIKE:
        sets += ["data.dataset=synthetic", f"data.synthetic_like={LIKE[suffix]}"]
    cfg = tomllib.loads(recipe.read_text())
    if cfg.get("generation", {}).get("method") == "conditional_ddpm":
        sets.append("generation.round_epochs=1")  # so the second epoch rehearses a round's fine-tune too
    return sets


def gcc_rounds(recipe: Path) -> int:
    """Rounds of a GCC recipe at full size (generator pre-training is round 0)."""
    cfg = tomllib.loads(recipe.read_text())
    gen = cfg.get("generation", {})
    if gen.get("method") != "conditional_ddpm":
        return 0
    epochs = int(cfg.get("train", {}).get("epochs", 1))
    return math.ceil(epochs / int(gen.get("round_epochs", 5)))


def step_time(stage: dict) -> float:
    """Median seconds per training step, the stage's first (warm-up) step left out when others exist."""
    steps = stage["step_seconds"]
    return statistics.median(steps[1:]) if len(steps) > 1 else (steps[0] if steps else 0.0)


def project(stage: dict, rounds: int) -> float:
    """Projected full-size seconds of one stage (see the module docstring): every epoch's steps, every epoch's
    other work and passes as the last rehearsed epoch had them, and the one-off work at the stage's start."""
    epochs = stage["epochs"] or 1
    per_epoch_other = per_epoch_passes = 0.0
    marks = stage["marks"]
    if len(marks) >= 2:  # the last epoch alone: wall - steps - passes - nested stages
        d = [b - a for a, b in zip(marks[-2], marks[-1])]
        per_epoch_other = max(d[0] - d[1] - d[2] - d[4], 0.0)
        per_epoch_passes = d[3]
    ran = stage["epochs_run"]
    one_off = max(stage["own_seconds"] - sum(stage["step_seconds"]) - stage["pass_seconds"] - ran * per_epoch_other, 0.0)
    one_off += max(stage["pass_projected"] - ran * per_epoch_passes, 0.0)
    total = epochs * (stage["steps_per_epoch"] * step_time(stage) + per_epoch_other + per_epoch_passes) + one_off
    name, times = stage["name"], max(stage["times_run"], 1)
    if rounds and name == "generator_sampling":  # once per round in the full recipe
        return total / times * rounds
    if rounds and name.startswith("generator_round"):  # a fine-tune per round after the first
        return total / times * max(rounds - 1, 0)
    return total


def gpu_stages(runs: Path | None, recipe: str) -> dict[str, dict] | None:
    """The stages a rehearsal of `recipe` measured on a GPU (its --keep folder), or None (not measured)."""
    path = None if runs is None else runs / Path(recipe).stem / "rehearsal.json"
    if path is None or not path.is_file():
        return None
    return {s["name"]: s for s in json.loads(path.read_text())["stages"]}


def rehearse(recipe: Path, max_steps: int, extra: list[str], timeout: float, workdir: Path,
             device: str = "cpu") -> dict:
    """Run one recipe's rehearsal in its own process; returns its measurements (or its failure)."""
    out = workdir / recipe.stem
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}",
           "TOOLKIT_CACHE_DIR": str(workdir / "cache")}
    cmd = [str(Path(sys.executable).parent / "toolkit"), "run", str(recipe), "-o", str(out), "--no-progress",
           "--device", device]
    for value in overrides(recipe, max_steps) + extra:
        cmd += ["--set", value]
    started = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        code, tail = proc.returncode, (proc.stdout + proc.stderr).strip().splitlines()[-3:]
    except subprocess.TimeoutExpired:
        code, tail = -1, [f"did not end within {timeout:.0f} s"]
    wall = time.perf_counter() - started
    measured = out / "rehearsal.json"
    stages = json.loads(measured.read_text())["stages"] if measured.is_file() else []
    return {"recipe": recipe.name, "ok": code == 0, "code": code, "tail": tail, "wall": wall, "stages": stages,
            "rounds": gcc_rounds(recipe)}


def table(results: list[dict], gpu_runs: Path | None) -> str:
    """One Markdown table: a row per stage, a total row per recipe."""
    lines = ["| recipe | stage | peak host memory | time/step | steps/epoch x epochs | passes (full size) | "
             "projected here | projected on the GPU |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        gpu = gpu_stages(gpu_runs, r["recipe"])
        total = gpu_total = 0.0
        for s in r["stages"]:
            if not (s["step_seconds"] or s["pass_seconds"] or s["own_seconds"] > 0.05):
                continue
            seconds = project(s, r["rounds"])
            total += seconds
            on_gpu = "not measured"
            if gpu is not None and s["name"] in gpu:
                gpu_seconds = project(gpu[s["name"]], r["rounds"])
                gpu_total += gpu_seconds
                g = gpu[s["name"]]
                on_gpu = (f"{_duration(gpu_seconds)} ({step_time(g):.3f} s/step, "
                          f"{g.get('peak_device_bytes', 0) / 2**30:.1f} GiB on the GPU)")
            lines.append(f"| {r['recipe']} | {s['name']} | {s['peak_bytes'] / 2**30:.1f} GiB | "
                         f"{step_time(s):.2f} s | {s['steps_per_epoch']} x {s['epochs'] or 1} | "
                         f"{_duration(s['pass_projected'])} | {_duration(seconds)} | {on_gpu} |")
        status = f"passed ({r['wall']:.0f} s)" if r["ok"] else f"FAILED (exit {r['code']}): {' / '.join(r['tail'])}"
        lines.append(f"| **{r['recipe']}** | **whole recipe**: {status} | "
                     f"{max((s['peak_bytes'] for s in r['stages']), default=0) / 2**30:.1f} GiB | | | | "
                     f"**{_duration(total)}** | {_duration(gpu_total) if gpu is not None else 'not measured'} |")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipes", nargs="*", type=Path)
    parser.add_argument("--paper", action="store_true", help="every paper recipe (recipes/<method>_<data set>.toml)")
    parser.add_argument("--only", default="", help="with --paper: a regular expression the recipe names must match")
    parser.add_argument("--max-steps", type=int, default=3)
    parser.add_argument("--set", dest="extra", action="append", default=[], help="more --set values for every run")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds a recipe may take before it fails")
    parser.add_argument("--device", default="cpu", help="where the rehearsals run (cpu, cuda)")
    parser.add_argument("--gpu-runs", type=Path, default=None,
                        help="the --keep folder of the same rehearsals run on a GPU: fills the GPU column")
    parser.add_argument("--keep", type=Path, default=None, help="keep the runs in this folder")
    args = parser.parse_args()
    recipes = list(args.recipes) + ([p for p in paper_recipes() if re.search(args.only, p.name)] if args.paper else [])
    if not recipes:
        parser.error("give recipes or --paper")
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="rehearsal-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results = []
    for recipe in recipes:
        result = rehearse(recipe.resolve(), args.max_steps, args.extra, args.timeout, workdir, args.device)
        results.append(result)
        print(f"{recipe.name}: {'passed' if result['ok'] else 'FAILED'} in {result['wall']:.0f} s", flush=True)
    print()
    print(f"Rehearsal, `[train] max_steps = {args.max_steps}`, device {args.device}, {os.cpu_count()} CPU cores, "
          f"{time.strftime('%Y-%m-%d')}:")
    print()
    print(table(results, args.gpu_runs))
    sys.exit(0 if all(r["ok"] for r in results) else 1)


if __name__ == "__main__":
    main()

"""The GPU check in one short call: every GPU code path the toolkit has, tried once, as one Markdown table.

    bash benchmarks/gpu/check.sh [OUT_DIR]                  # on the GPU machine (at most about 8 minutes)
    python benchmarks/gpu/check.py --cpu --quick --out DIR  # the parts a CPU can check (the test suite runs it)

Parts, each in its own process with a time limit, each ending "ok", "skipped (why)" or "FAILED (why)":
environment (torch, CUDA, devices, bf16, faiss), imports without ray and optuna (only a search needs them)
and without MLflow's server, the CUDA tests, the speed settings (bf16 autocast, channels_last, torch.compile,
data on the device) in a real `toolkit run`, faiss k-means on the GPU against the CPU, two-rank NCCL data
parallel (with two GPUs), and each method's stage throughput against the bare backbone's forward+backward
at CIFAR size (benchmarks/throughput.py), and paper recipes rehearsed at CIFAR-10 size on the GPU
(benchmarks/rehearsal.py). Writes OUT/check.md; exits 1 if a part failed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[2]
BLOCK_SEARCH = "import sys; sys.modules.update({'ray': None, 'optuna': None, 'mlflow.server': None}); "


@dataclass
class Part:
    name: str
    status: str
    detail: str
    seconds: float


@dataclass
class Settings:
    cpu: bool
    quick: bool
    out: Path
    python: str
    cuda: bool
    gpus: int


def run(settings: Settings, args: list[str], timeout: float, env: dict[str, str] | None = None) -> tuple[int, str]:
    """A child process of the check (its own interpreter, so a crash or a hang stays in its part)."""
    full_env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{settings.out / 'mlflow.db'}",
                "TOOLKIT_CACHE_DIR": str(settings.out / "cache"), "PYTHONPATH": str(ROOT / "benchmarks"),
                **(env or {})}
    try:
        proc = subprocess.run([settings.python, *args], cwd=ROOT, env=full_env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return 124, f"no result within {timeout:.0f} s"
    return proc.returncode, (proc.stdout + proc.stderr).strip()


def last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


# ------------------------------------------------------------------------------------------------ parts
def environment(s: Settings) -> tuple[str, str]:
    code = ("import json, sys, torch\n"
            "out = {'python': sys.version.split()[0], 'torch': torch.__version__, 'cuda': torch.cuda.is_available()}\n"
            "if out['cuda']:\n"
            "    out['devices'] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]\n"
            "    out['bf16'] = torch.cuda.is_bf16_supported()\n"
            "try:\n"
            "    import faiss\n"
            "    out['faiss'] = faiss.__version__\n"
            "    out['faiss_gpus'] = faiss.get_num_gpus() if hasattr(faiss, 'get_num_gpus') else 0\n"
            "except ImportError as exc:\n"
            "    out['faiss'] = f'missing ({exc})'\n"
            "print(json.dumps(out))\n")
    rc, text = run(s, ["-c", code], 120)
    if rc != 0:
        return "FAILED", last_line(text)
    facts = json.loads(text.splitlines()[-1])
    return "ok", ", ".join(f"{k} {v}" for k, v in facts.items())


def imports(s: Settings) -> tuple[str, str]:
    code = (BLOCK_SEARCH + "import toolkit.commands.app, toolkit.run.engine, toolkit.recipe.loading; "
            "from toolkit.registry import entry_points as r; "
            "names = sorted(n for slot in ('pretrain', 'head_init', 'selection', 'calibration', 'generation') "
            "for n in r.names(slot)); "
            "[r.load(slot, n) for slot in ('pretrain', 'head_init', 'selection', 'calibration', 'generation') "
            "for n in r.names(slot)]; print(len(names), 'plugins')")
    rc, text = run(s, ["-c", code], 180)
    return ("ok", "toolkit and " + last_line(text) + " load with ray, optuna and mlflow.server blocked") if rc == 0 \
        else ("FAILED", last_line(text))


def cuda_tests(s: Settings) -> tuple[str, str]:
    if not s.cuda:
        return "skipped", "no CUDA device"
    files = ["tests/core/test_nn.py", "tests/core/test_ops_backends.py", "tests/core/test_speed_options.py"]
    rc, text = run(s, ["-m", "pytest", "-q", "-o", "addopts=", "-p", "no:randomly", *files], 300)
    return ("ok" if rc == 0 else "FAILED"), last_line(text)


def speed_settings(s: Settings) -> tuple[str, str]:
    """One real `toolkit run` with every speed setting forced on, and one with them off, on the device."""
    device = "cpu" if s.cpu else "cuda"
    data = (["--set", "data.dataset=synthetic", "--set", "data.num_samples=512", "--set", "data.synthetic_size=16"]
            if s.quick else [])
    base = ["-m", "toolkit.commands.app", "run", "recipes/baseline_digits.toml", "--device", device, "--no-progress",
            "--set", "pretrain.method=none", "--set", "head_init.method=random", "--set", "model.backbone=small_cnn",
            "--set", "train.epochs=2", "--set", "train.batch_size=256", *data]
    on = ["--set", "train.channels_last=true", "--set", "train.data_on_device=true",
          "--set", f"train.compile={'false' if s.cpu else 'true'}"]
    off = ["--set", "train.channels_last=false", "--set", "train.data_on_device=false"]
    results = []
    for label, extra in ([("on", on)] if s.quick else [("off", off), ("on", on)]):
        start = time.perf_counter()
        rc, text = run(s, [*base, *extra, "-o", str(s.out / f"speed_{label}")], 300)
        if rc != 0:
            return "FAILED", f"settings {label}: {last_line(text)}"
        summary = json.loads((s.out / f"speed_{label}" / "summary.json").read_text())
        results.append(f"{label}: ACC {summary['acc']:.3f}, {time.perf_counter() - start:.0f} s")
    what = "channels_last, data on device" + ("" if s.cpu else ", torch.compile, bf16 autocast")
    return "ok", f"{what}: " + "; ".join(results)


def faiss_gpu(s: Settings) -> tuple[str, str]:
    n = 4_000 if s.quick else 60_000
    code = ("import time, torch\n"
            "from toolkit.ops import _gpu\n"
            "from toolkit.ops.kmeans import kmeans, pick_backend\n"
            f"x = torch.randn({n}, 512)\n"
            "t = time.perf_counter(); kmeans(x, 10, niter=20, seed=0); cpu = time.perf_counter() - t\n"
            "line = f'CPU {cpu:.2f} s'\n"
            "if torch.cuda.is_available():\n"
            "    g = x.cuda(); kmeans(g, 10, niter=2, seed=0); torch.cuda.synchronize()\n"
            "    t = time.perf_counter(); kmeans(g, 10, niter=20, seed=0); torch.cuda.synchronize()\n"
            "    line += f', GPU {time.perf_counter() - t:.2f} s via {pick_backend(g, 10, 1)}'\n"
            "    line += f' (faiss GPUs: {_gpu.faiss_gpus()})'\n"
            "print(line)\n")
    rc, text = run(s, ["-c", code], 240)
    if rc != 0:
        return "FAILED", last_line(text)
    return ("ok" if s.cuda else "skipped"), f"k-means {n} x 512 into 10: {last_line(text)}" + \
        ("" if s.cuda else " (no CUDA device: CPU only)")


def nccl(s: Settings) -> tuple[str, str]:
    if not s.cuda or s.gpus < 2:
        return "skipped", f"needs 2 GPUs ({s.gpus} here)"
    rc, text = run(s, [str(Path(__file__).with_name("nccl_pair.py"))], 300)
    return ("ok" if rc == 0 else "FAILED"), last_line(text)


def throughput(s: Settings) -> tuple[str, str]:
    if s.quick:
        args = ["--n", "256", "--backbone", "small_cnn", "--batch-size", "128", "--ceiling-steps", "1",
                "--methods", "baseline", "--threads", "1"]
    else:
        args = ["--n", "50000", "--backbone", "resnet18", "--batch-size", "256"]
    if s.cpu:
        args += ["--device", "cpu"]
    rc, text = run(s, [str(ROOT / "benchmarks" / "throughput.py"), *args], 420 if not s.quick else 300)
    if rc != 0:
        return "FAILED", last_line(text)
    (s.out / "throughput.txt").write_text(text + "\n")
    table = [line for line in text.splitlines() if line.startswith("|")]
    return "ok", "see below" if table else last_line(text)


def rehearsal(s: Settings) -> tuple[str, str]:
    """Paper recipes at CIFAR-10 size, a few steps per stage on the GPU: memory, step times, projected hours.
    The suite rehearses on the CPU itself (tests/core/test_rehearsal.py), so the CPU check skips this part."""
    if not s.cuda:
        return "skipped", "no CUDA device (the CPU rehearsal is benchmarks/rehearsal.py without --device)"
    recipes = [str(ROOT / "recipes" / f"{name}.toml") for name in ("cdc_cifar10", "gcc_cifar10")]
    rc, text = run(s, [str(ROOT / "benchmarks" / "rehearsal.py"), *recipes, "--device", "cuda", "--max-steps", "2",
                       "--timeout", "120", "--keep", str(s.out / "rehearsal")], 260)
    (s.out / "rehearsal.txt").write_text(text + "\n")
    return ("ok" if rc == 0 else "FAILED"), "see below" if "| recipe |" in text else last_line(text)


PARTS: list[tuple[str, Callable[[Settings], tuple[str, str]]]] = [
    ("environment", environment), ("imports without ray, optuna, mlflow.server", imports),
    ("CUDA tests", cuda_tests), ("speed settings in a real run", speed_settings), ("faiss k-means on the GPU", faiss_gpu),
    ("two-rank NCCL data parallel", nccl), ("stage throughput vs bare backbone", throughput),
    ("paper recipes rehearsed at CIFAR-10 size", rehearsal),
]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ROOT / "benchmarks" / "gpu" / "out")))
    p.add_argument("--cpu", action="store_true", help="check on the CPU (CUDA parts are skipped)")
    p.add_argument("--quick", action="store_true", help="tiny sizes (the test suite's run)")
    p.add_argument("--only", default="", help="comma-separated part names (substrings) to run")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    import torch

    cuda = torch.cuda.is_available() and not args.cpu
    s = Settings(args.cpu or not cuda, args.quick, args.out.resolve(), sys.executable, cuda,
                 torch.cuda.device_count() if cuda else 0)
    parts: list[Part] = []
    for name, fn in PARTS:
        if args.only and not any(word in name for word in args.only.split(",")):
            continue
        start = time.perf_counter()
        try:
            status, detail = fn(s)
        except Exception as exc:  # noqa: BLE001 - a broken part is reported, the others still run
            status, detail = "FAILED", f"{type(exc).__name__}: {exc}"
        parts.append(Part(name, status, detail.replace("|", "/"), time.perf_counter() - start))
        print(f"{name}: {status} ({parts[-1].seconds:.0f} s) {detail}", flush=True)
    lines = [f"# GPU check, {date.today()}", "", f"Device: {'CUDA' if cuda else 'CPU only'}; "
             f"mode: {'quick' if args.quick else 'full'}", "", "| part | result | detail | s |", "|---|---|---|---|"]
    lines += [f"| {x.name} | {x.status} | {x.detail} | {x.seconds:.0f} |" for x in parts]
    tp = s.out / "throughput.txt"
    if tp.is_file():
        lines += ["", "Throughput (benchmarks/throughput.py):", "", *[line for line in tp.read_text().splitlines()
                                                                       if line.startswith("|") or "device" in line]]
    rh = s.out / "rehearsal.txt"
    if rh.is_file():
        lines += ["", "Rehearsal (benchmarks/rehearsal.py; the GPU column of a CPU rehearsal reads "
                  f"--gpu-runs {s.out / 'rehearsal'}):", "",
                  *[line for line in rh.read_text().splitlines() if line.startswith("|")]]
    (s.out / "check.md").write_text("\n".join(lines) + "\n")
    print(f"\nwrote {s.out / 'check.md'}")
    return 1 if any(x.status == "FAILED" for x in parts) else 0


if __name__ == "__main__":
    raise SystemExit(main())

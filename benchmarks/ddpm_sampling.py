"""GCC's generator: ancestral 1000-step DDPM sampling versus fast samplers, same trained network.

    python benchmarks/ddpm_sampling.py [--run OUTPUT_DIR] [--per-cluster 50] [--samplers ddpm:0,ddim:50,...]

Loads a finished GCC run (its final checkpoint holds the generator, the backbone and the clustering
head; without --run, `recipes/gcc_digits.toml` is run first into a temp folder), draws --per-cluster
images for every cluster with each sampler and prints images per second, the speed-up over ancestral
sampling, and the conditional fidelity: the share of generated images the run's own clustering head
assigns to the cluster they were conditioned on. `ddpm:0` means ancestral sampling over all T steps.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]


def load_run(folder: Path, device: torch.device):  # noqa: ANN201 - (ddpm, classify, options)
    from deepclust_gcc.ddpm import ConditionalDDPM
    from deepclust_gcc.schedule import make_betas
    from toolkit.files import load_safe
    from toolkit.data.views import BatchView
    from toolkit.nn.backbones import build_backbone
    from toolkit.nn.heads import ClusterHead
    from toolkit.recipe.loading import load_recipe

    recipe = load_recipe(folder / "recipe.toml")
    ckpt = load_safe(folder / "checkpoints" / "final.pt")
    meta = ckpt["meta"]
    state = ckpt.get("plugin_state", {}).get("generation") or {}
    if "generator" not in state:
        sys.exit(f"{folder}: the run has no conditional_ddpm generator in checkpoints/final.pt")
    o = recipe.build_plugin("generation").options
    ddpm = ConditionalDDPM(o.preset, meta["image_size"][0], meta["channels"], meta["num_clusters"],
                           make_betas(o.beta_schedule, o.timesteps, o.beta_start, o.beta_end, o.scale_betas), o.dropout, o.ema_decay)
    ddpm.load_state_dict(state["generator"]["ddpm"])
    backbone = build_backbone(recipe.config.model.backbone_config(), meta["channels"], tuple(meta["image_size"]))
    backbone.load_state_dict(ckpt["backbone"])
    head = ClusterHead(meta["feature_dim"], meta["num_clusters"], recipe.config.model.head_hidden_dim)
    head.load_state_dict(ckpt["head"])
    backbone, head, ddpm = backbone.to(device).eval(), head.to(device).eval(), ddpm.to(device)
    raw = BatchView(None, meta["mean"], meta["std"])

    @torch.no_grad()
    def classify(images_uint8: torch.Tensor) -> torch.Tensor:
        return head(backbone(raw(images_uint8))).argmax(1)

    return ddpm, classify, o, meta["num_clusters"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="output folder of a finished GCC run (default: run gcc_digits)")
    parser.add_argument("--per-cluster", type=int, default=50)
    parser.add_argument("--samplers", default="ddpm:0,ddim:50,ddim:20,dpm_solver:50,dpm_solver:20")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    from deepclust_gcc.ddpm import to_uint8
    from toolkit.api.precision import autocast
    from toolkit.run.device import resolve_device

    device = resolve_device(args.device)
    run = args.run
    if run is None:
        run = Path(tempfile.mkdtemp(prefix="gcc_digits_")) / "run"
        subprocess.run([sys.executable, "-m", "toolkit.commands.app", "run", str(ROOT / "recipes" / "gcc_digits.toml"),
                        "--output-dir", str(run)], check=True)
    ddpm, classify, o, k = load_run(run, device)
    wanted = torch.arange(k, device=device).repeat_interleave(args.per_cluster)
    rows = []
    for spec in args.samplers.split(","):
        kind, steps = spec.split(":")
        n_steps = int(steps) or ddpm.timesteps
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with autocast(device):
            images = to_uint8(ddpm.generate(wanted, kind, n_steps, torch.Generator().manual_seed(0), o.use_ema,
                                            args.batch_size, o.clip_denoised))
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        fidelity = float((classify(images) == wanted).float().mean())
        rows.append((f"{kind} {n_steps} steps", len(wanted) / seconds, seconds, fidelity))
    base = rows[0][1]
    table = Table(title=f"conditional DDPM sampling, {run} ({device}, {len(wanted)} images per sampler)")
    for col in ("sampler", "images/s", "seconds", f"speed-up vs {rows[0][0]}", "fidelity"):
        table.add_column(col, justify="right")
    for name, ips, seconds, fidelity in rows:
        table.add_row(name, f"{ips:.1f}", f"{seconds:.1f}", f"{ips / base:.1f}x", f"{fidelity:.3f}")
    Console(width=160).print(table)


if __name__ == "__main__":
    main()

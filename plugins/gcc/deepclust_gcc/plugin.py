"""Generation `conditional_ddpm`: GCC's class-conditional DDPM and its three calibration losses.

Rounds (the paper's Section 3.4): before the first clustering epoch the generator is trained on the real
images with the clustering head's pseudo-labels (stage I-d); every `round_epochs` epochs it is
fine-tuned on refreshed labels. After each (re)training a pool of label-matched images is generated
with the frozen generator, and each clustering step adds L_d + L_cwm + L_ml on real + generated batches.
Any recipe can use this slot (e.g. CDC or SPICE with generation = "conditional_ddpm").
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from deepclust_gcc.ddpm import ConditionalDDPM, to_uint8
from deepclust_gcc.generator_training import GeneratorTrainer
from deepclust_gcc.losses import loss_cwm, loss_d, loss_ml
from deepclust_gcc.options import Options
from deepclust_gcc.pool import Pool, pool_counts
from deepclust_gcc.schedule import make_betas
from toolkit.api import Batch, EpochState, GenerationPlugin, RunContext, autocast
from toolkit.data.views import AugmentConfig

POOL_SALT = 52
DRAW_SALT = 53


class ConditionalDDPMGeneration(GenerationPlugin[Options]):
    """Trains and samples a conditional DDPM per round; adds GCC's losses to each clustering step."""

    def batch_views(self) -> frozenset[str]:
        return frozenset({"weak"})  # the real batch's pseudo-labels and features; no strong view of real images

    def setup(self, ctx: RunContext, head: torch.nn.Module, feature_dim: int) -> None:
        o = self.options
        data = ctx.data
        if data.image_size[0] != data.image_size[1]:
            raise ValueError(f"conditional_ddpm needs square images, got {data.image_size}")
        self.ctx, self.head = ctx, head
        betas = make_betas(o.beta_schedule, o.timesteps, o.beta_start, o.beta_end, o.scale_betas)
        with ctx.seeded(POOL_SALT):  # seeded, and the run's other draws stay where they were
            ddpm = ConditionalDDPM(o.preset, data.image_size[0], data.channels, ctx.num_clusters, betas,
                                   o.dropout, o.ema_decay).to(ctx.device)
        self.trainer = GeneratorTrainer(ddpm, o.lr, o.grad_clip, o.warmup_steps)
        self.generated_view = ctx.views.custom(AugmentConfig(hflip=0.5 if o.generated_hflip else 0.0))
        self.pool: Pool | None = None
        self.rounds_done = 0
        self.previous_labels: torch.Tensor | None = None
        self._draw_gen = ctx.generator(DRAW_SALT)

    @property
    def ddpm(self) -> ConditionalDDPM:
        return self.trainer.ddpm

    # ------------------------------------------------------------------------------ rounds
    def on_epoch_start(self, ctx: RunContext, state: EpochState) -> None:
        o = self.options
        previous = state.epoch - 1  # epochs finished so far: rounds start every round_epochs of them
        self._draw_gen = ctx.generator(DRAW_SALT, state.epoch)
        if not self._active():
            return
        round_index, into_round = divmod(previous, o.round_epochs)
        if into_round:
            if o.pool_refresh_epochs and into_round % o.pool_refresh_epochs == 0 and self.pool is not None:
                self.pool = self._generate_pool(ctx, state.probs.argmax(1), round_index, previous)
            return
        labels = state.probs.argmax(1)  # the clustering head, eval mode, un-augmented images
        if round_index == 0:
            stage, epochs = "generator_pretrain", o.pretrain_epochs
        else:
            stage, epochs = f"generator_round{round_index}", o.finetune_epochs
        if epochs:
            if round_index > 0 and not self._resumed_inside(ctx, stage):
                self.trainer.start_round(o.round_ema)
            ctx.events.emit("on_stage_start", stage=stage, total=epochs)
            loss = self.trainer.train(ctx, labels, epochs, stage, round_index, o.batch_size, o.hflip,
                                      warmup=round_index == 0)
            ctx.events.emit("on_stage_end", stage=stage)
        else:
            loss = float("nan")
        ctx.events.emit("on_stage_start", stage="generator_sampling", total=None)  # timed apart from training
        self.pool = self._generate_pool(ctx, labels, round_index)
        metrics = {"pool_size": float(len(self.pool)), "loss_ddpm": loss,
                   "min_cluster_fraction": float(torch.bincount(labels, minlength=ctx.num_clusters).min())
                   / max(len(labels), 1) * ctx.num_clusters}
        if state.classify is not None:
            metrics["fidelity"] = self.fidelity(state.classify)
        ctx.events.emit("on_stage_end", stage="generator_sampling")
        if self.previous_labels is not None:
            metrics["labels_changed"] = float((self.previous_labels != labels).float().mean())
        self.previous_labels = labels.clone()
        self.rounds_done = round_index + 1
        ctx.log_epoch("generation", round_index, metrics)
        if metrics["min_cluster_fraction"] < 0.1:
            ctx.warn(f"generation round {round_index}: a cluster holds under 10% of N/K images; "
                     "the generator has little data for it")
        self._log_grid(ctx, round_index)

    @staticmethod
    def _resumed_inside(ctx: RunContext, stage: str) -> bool:
        """A resumed run that stopped inside this fine-tune: its saved EMA already had the round's start applied."""
        return ctx.resume_point(stage) is not None

    def _active(self) -> bool:
        o = self.options
        return o.lambda_d > 0 or o.lambda_cwm > 0 or o.lambda_ml > 0 or o.grid_per_cluster > 0

    def _generate_pool(self, ctx: RunContext, labels: torch.Tensor, round_index: int, epoch: int = 0) -> Pool:
        o = self.options
        size = o.pool_size or len(labels)
        counts = pool_counts(labels, ctx.num_clusters, size, o.pool_min_per_class)
        wanted = torch.repeat_interleave(torch.arange(ctx.num_clusters), counts).to(ctx.device)
        gen = ctx.generator(POOL_SALT, round_index, *([epoch] if epoch else []))  # round starts: (salt, round)
        chunk = o.sample_batch_size
        (x,) = ctx.chunked(len(wanted), chunk, lambda a, b: (self.ddpm.generate(  # chunk by chunk: the same draws
            wanted[a:b], o.sampler, o.sample_steps or o.timesteps, gen, o.use_ema, chunk, o.clip_denoised),))
        return Pool(to_uint8(x), wanted)

    def fidelity(self, classify: Callable[[torch.Tensor], torch.Tensor]) -> float:
        """Share of pool images the clustering head assigns to the cluster they were conditioned on."""
        if self.pool is None or len(self.pool) == 0:
            return float("nan")
        pool = self.pool

        def hits(a: int, b: int) -> tuple[torch.Tensor]:  # in chunks: bounded memory
            probs = classify(self.ctx.views.raw(pool.images[a:b]))
            return ((probs.argmax(1) == pool.labels[a:b].to(probs.device)).float(),)

        (hit,) = self.ctx.chunked(len(pool), 1024, hits)
        return float(hit.sum()) / len(pool)

    def _log_grid(self, ctx: RunContext, round_index: int) -> None:
        o = self.options
        if not o.grid_per_cluster or ctx.artifact_dir is None or self.pool is None:
            return
        from torchvision.utils import save_image

        rows = []
        for k in range(len(self.pool.counts)):
            start, n = int(self.pool.offsets[k]), int(self.pool.counts[k])
            take = self.pool.images[start:start + min(n, o.grid_per_cluster)]
            pad = torch.zeros((o.grid_per_cluster - len(take), *take.shape[1:]), dtype=take.dtype, device=take.device)
            rows.append(torch.cat([take, pad]))
        if not rows:
            return
        path = ctx.artifact_dir / "generated" / f"round{round_index:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image(torch.cat(rows).float().div(255).cpu(), path, nrow=o.grid_per_cluster, padding=1)
        ctx.log_artifact(path, "generated")

    # -------------------------------------------------------------------------- the losses
    def loss(self, batch: Batch, forward: Any) -> dict[str, torch.Tensor]:
        o = self.options
        if self.pool is None or not (o.lambda_d or o.lambda_cwm or o.lambda_ml):
            return {}
        labels = batch.logits_weak.detach().argmax(1)  # the real batch's online pseudo-labels (Section 3.3.1)
        if o.fresh_per_step:  # one image per real row, sampled now for the label that row asks for
            served = torch.arange(len(labels), device=labels.device)
            images = to_uint8(self.ddpm.generate(labels, o.sampler, o.sample_steps or o.timesteps, self._draw_gen,
                                                 o.use_ema, o.sample_batch_size, o.clip_denoised))
        else:
            served, images = self.pool.draw(labels, self._draw_gen)
        if len(served) < 2:
            return {}
        y = labels[served]
        with autocast(self.ctx.device):
            feats_g, logits_g = forward(self.generated_view(images, self._draw_gen),
                                        keep_bn_statistics=o.generated_bn == "frozen")
        feats_g, logits_g = feats_g.float(), logits_g.float()
        out: dict[str, torch.Tensor] = {}
        if o.lambda_d:
            out["gcc_d"] = o.lambda_d * loss_d(batch.features_weak[served], feats_g, y, self.ctx.num_clusters,
                                               kernel_num=o.mmd_kernel_num, kernel_mul=o.mmd_kernel_mul,
                                               reduce=o.mmd_kernel_reduce, l2norm=o.mmd_l2norm)
        if o.lambda_cwm:
            out["gcc_cwm"] = o.lambda_cwm * loss_cwm(feats_g, y, o.cwm_exclude_diag)
        if o.lambda_ml:
            out["gcc_ml"] = o.lambda_ml * loss_ml(logits_g, y, o.ml_on, o.ml_reduction)
        return out

    # --------------------------------------------------------------------------- resume
    def state_dict(self) -> dict[str, Any]:
        pool = None if self.pool is None else {"images": self.pool.images.cpu(), "labels": self.pool.labels.cpu()}
        prev = None if self.previous_labels is None else self.previous_labels.cpu()
        return {"generator": self.trainer.state_dict(), "pool": pool, "rounds_done": self.rounds_done,
                "previous_labels": prev}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self.trainer.load_state_dict(state["generator"])
        device = self.ctx.device
        pool = state.get("pool")
        self.pool = None if pool is None else Pool(pool["images"].to(device), pool["labels"].to(device))
        prev = state.get("previous_labels")
        self.previous_labels = None if prev is None else prev.to(device)
        self.rounds_done = int(state.get("rounds_done", 0))

"""The self-labeling epoch: forward weak+strong views, ask the plugins, sum the losses, step.

Per-step numbers stay on the device and are read once per epoch, so the loop does not stall a GPU.
On CUDA even the non-finite-loss check reads a step's flag one step late (after the next forward is
queued), so the host never waits for the step it just launched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import torch
import torch.nn.functional as F
from torch import nn

from toolkit.api.context import Batch, RunContext, Selection
from toolkit.api.precision import autocast
from toolkit.errors import TrainingError
from toolkit.nn.batch_norm import frozen_statistics
from toolkit.run import contract
from toolkit.run.contract import Call
from toolkit.run.guard import plugin_call
from toolkit.run.lr_schedule import set_factor
from toolkit.api.slots import CalibrationPlugin, GenerationPlugin, SelectionPlugin

if TYPE_CHECKING:
    from toolkit.run.frozen_features import FrozenFeatures
    from torch.optim.swa_utils import AveragedModel

    from toolkit.run.parallel import DataParallel

SELF_LABEL_SALT = 3
REINIT_SALT = 12


@dataclass
class Models:
    backbone: nn.Module
    head: nn.Module
    freeze_backbone: bool = False
    #: Data-parallel training (None in a single process) and the DDP wrappers the training forward uses;
    #: `backbone` / `head` stay the plain modules, so checkpoints and evaluation do not change.
    parallel: "DataParallel | None" = None
    train_backbone: nn.Module | None = None
    train_head: nn.Module | None = None
    #: [train] ema_decay > 0: an exponential moving average of backbone and head (torch's AveragedModel),
    #: updated after every step; evaluation, the epoch state plugins see and the final checkpoint use it.
    ema: "AveragedModel | None" = None
    ema_decay: float = 0.0

    def reinitialise(self, ctx: RunContext) -> None:
        """Fresh random weights for backbone and head ([train] reinit), seeded from the run, in place: the
        optimiser and any data-parallel wrapper keep the same parameters, every rank draws the same weights.
        Every layer with a `reset_parameters` (torch's conv, linear and norm layers) is reset; the EMA restarts."""
        with ctx.seeded(REINIT_SALT):
            for module in (*self.backbone.modules(), *self.head.modules()):
                reset = getattr(module, "reset_parameters", None)
                if callable(reset):
                    reset()
        if self.ema is not None:
            self.start_ema(self.ema_decay)

    def start_ema(self, decay: float) -> None:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        self.ema_decay = decay
        pair = nn.ModuleDict({"backbone": self.backbone, "head": self.head})
        self.ema = AveragedModel(pair, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)

    def update_ema(self) -> None:
        if self.ema is not None:
            self.ema.update_parameters(nn.ModuleDict({"backbone": self.backbone, "head": self.head}))

    @property
    def eval_backbone(self) -> nn.Module:
        return self.ema.module["backbone"] if self.ema is not None else self.backbone

    @property
    def eval_head(self) -> nn.Module:
        return self.ema.module["head"] if self.ema is not None else self.head

    def head_forward(self, feats: torch.Tensor) -> torch.Tensor:
        """The head (its training wrapper under data parallel) on features the backbone already made."""
        return (self.train_head if self.train_head is not None else self.head)(feats)

    def forward(self, images: torch.Tensor, keep_bn_statistics: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(features, logits) of the training modules; `keep_bn_statistics`: their BatchNorm running statistics
        stay as they were (the batch still normalises itself), for images that are not the data."""
        if keep_bn_statistics:
            with frozen_statistics(self.backbone, self.head):
                return self.forward(images)
        backbone = self.train_backbone if self.train_backbone is not None else self.backbone
        head = self.train_head if self.train_head is not None else self.head
        if self.freeze_backbone:
            with torch.no_grad():
                feats = backbone(images)
        else:
            feats = backbone(images)
        return feats, head(feats)


@dataclass
class Probe:
    """Engine-side ground truth for pseudo-label accuracy; never passed to a plugin."""

    labels: torch.Tensor | None = None
    cluster_to_class: torch.Tensor | None = None

    def correct(self, index: torch.Tensor, pseudo: torch.Tensor) -> torch.Tensor | None:
        if self.labels is None or self.cluster_to_class is None:
            return None
        return (self.cluster_to_class[pseudo] == self.labels[index]).sum()


@dataclass
class EpochTotals:
    sums: dict[str, torch.Tensor] = field(default_factory=dict)
    steps: int = 0

    def add(self, name: str, value: torch.Tensor | float) -> None:
        v = value.detach().float() if isinstance(value, torch.Tensor) else torch.tensor(float(value))
        self.sums[name] = self.sums[name] + v if name in self.sums else v


def selection_loss(batch: Batch, sel: Selection) -> torch.Tensor:
    """Weighted cross-entropy of the clustering head on `sel.view` for the selected rows."""
    if len(sel) == 0:  # a zero that keeps the graph, from logits the step computed anyway
        done = [batch.computed(f"logits_{v}") for v in (sel.view, "weak", "strong")]
        return next((t for t in done if t is not None), batch.logits_weak).sum() * 0.0
    logits = batch.logits_strong if sel.view == "strong" else batch.logits_weak
    per = F.cross_entropy(logits[sel.rows].float(), sel.labels, reduction="none")
    if sel.weights is not None:
        per = per * sel.weights
    denom = len(batch) if sel.normalize == "batch" else len(sel)
    return sel.scale * per.sum() / denom


def restrict(sel: Selection, rows: slice) -> Selection:
    """The part of a planned batch's selection that falls in the chunk `rows`, renumbered from 0."""
    keep = (sel.rows >= rows.start) & (sel.rows < rows.stop)
    return Selection(rows=sel.rows[keep] - rows.start, labels=sel.labels[keep],
                     weights=sel.weights[keep] if sel.weights is not None else None, view=sel.view, name=sel.name,
                     normalize=sel.normalize, scale=sel.scale)


def train_epoch(ctx: RunContext, epoch: int, models: Models, optimizer: torch.optim.Optimizer,
                selection: SelectionPlugin, calibration: CalibrationPlugin, generation: GenerationPlugin,
                probe: Probe, grad_clip: float | None = None,
                lr_at: Callable[[int, int], float] | None = None, separate: bool = False,
                frozen: "FrozenFeatures | None" = None, sub_batch: int | None = None) -> dict[str, float]:
    """One pass over the training set; returns mean losses, selected fractions, pseudo-label accuracy, and
    the learning rate. `lr_at(epoch, step)` scales the base rates before each step (a schedule); `separate`
    forwards the weak and the strong view one after the other instead of as one batch; `frozen` ([train]
    cached_views) gives the views' features of a frozen backbone, so only the head runs.

    `sub_batch` ([train] sub_batch_size, CDC's B_s): each batch is planned once (a forward without gradient,
    confidence, selection), then trained in contiguous chunks of this many rows with one optimiser step per
    chunk, as CDC's Algorithm 1 does; the schedule's factor is the batch's for all its chunks."""
    gen = ctx.generator(SELF_LABEL_SALT, epoch)
    models.backbone.train(not models.freeze_backbone)
    models.head.train()
    totals = EpochTotals()
    k = ctx.num_clusters
    per_cluster = torch.zeros(k, device=ctx.device)
    seen = 0
    params = [p for group in optimizer.param_groups for p in group["params"]]
    lagged = ctx.device.type == "cuda"
    pending: tuple[int, dict[str, torch.Tensor]] | None = None  # (step, losses) not yet checked for finiteness
    par = models.parallel
    # Data-parallel ranks share the permutation (gen) but draw their own augmentations.
    view_gen = gen if par is None else ctx.generator(SELF_LABEL_SALT, epoch, 1_000 + par.rank)
    declared = frozenset().union(*(plugin.batch_views() for plugin in (selection, calibration, generation)))
    for step, index in enumerate(ctx.batches(gen, drop_last=True)):
        gather = None
        if par is not None:
            size = len(index)
            index = par.shard(index)
            gather = lambda x, n=size: par.gather_rows(x, n)  # noqa: E731
        uint8 = ctx.images(index)
        full_check = not lagged or step == 0  # value checks read the host: every step on CPU, once an epoch on GPU
        chunks = sub_batch is not None and sub_batch < len(index)
        with torch.set_grad_enabled(not chunks):  # a planned batch is only read, its chunks train
            planned = _batch(ctx, models, epoch, step, index, uint8, view_gen, separate, frozen, gather, declared)
        if pending is not None:  # previous step's losses, checked once this step's forward is queued
            _check_finite(epoch, *pending)
            pending = None
        if full_check:  # before the plugins see the batch, then again for views they made it compute
            _check_logits(planned, epoch, step)
        selections = _plan(planned, epoch, k, calibration, selection, probe, totals, per_cluster, full_check)
        if full_check:
            _check_logits(planned, epoch, step)
        parts = [slice(a, min(a + sub_batch, len(index))) for a in range(0, len(index), sub_batch)] if chunks \
            else [slice(0, len(index))]
        for rows in parts:
            if chunks:
                batch = _batch(ctx, models, epoch, step, index[rows], uint8[rows], view_gen, separate, frozen, gather,
                               declared, source=planned, rows=rows)
                batch.whole = planned
                batch.rows_in_whole = torch.arange(rows.start, rows.stop, device=ctx.device)
                chosen = [restrict(sel, rows) for sel in selections]
            else:
                batch, chosen = planned, selections
            losses = _losses(batch, chosen, epoch, calibration, generation, models)
            total = sum(losses.values())
            if lagged:
                pending = (step, losses)
            else:
                _check_finite(epoch, step, losses)
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            if par is not None:
                par.sync_gradients()
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(params, grad_clip)
            if lr_at is not None:
                set_factor(optimizer, lr_at(epoch, step))
            optimizer.step()
            models.update_ema()
            for n, v in losses.items():
                totals.add(n, v)
            totals.add("loss", total)
            totals.steps += 1
        seen += len(index)
    if pending is not None:
        _check_finite(epoch, *pending)
    rate = {"lr": float(optimizer.param_groups[0]["lr"])} if lr_at is not None else {}  # the head's, last step
    if par is None:
        return {**_summarise(totals, seen, per_cluster, selections_names=[s for s in totals.sums if s.startswith("selected_")]),
                **rate}
    par.sync_buffers()
    seen = _sum_over_ranks(par, totals, seen, per_cluster, ctx.device)
    out = _summarise(totals, seen, per_cluster, selections_names=[s for s in totals.sums if s.startswith("selected_")])
    return {**out, **rate, **par.epoch_checks(params, len(ctx.data))}


def _batch(ctx: RunContext, models: Models, epoch: int, step: int, index: torch.Tensor, uint8: torch.Tensor,
           view_gen: torch.Generator, separate: bool, frozen: "FrozenFeatures | None",
           gather: Callable[[torch.Tensor], tuple[torch.Tensor, slice]] | None, declared: frozenset[str],
           source: Batch | None = None, rows: slice | None = None) -> Batch:
    """A step's Batch. "joint": the views some plugin declares are augmented and forwarded at once, as one
    BatchNorm batch; "separate": each view is forwarded on first use. A view nobody declared is augmented and
    forwarded only if read. With gradient unless the caller disabled it (then also for later, lazy forwards).
    `source`/`rows`: a chunk of a planned batch, whose augmented images it reuses."""
    grad = torch.is_grad_enabled()

    def images(view: str) -> torch.Tensor:
        if source is not None:
            return getattr(source, view)[rows]
        return ctx.views.get(view)(uint8, view_gen)

    def forward(batch: Batch, views: list[str]) -> None:
        with torch.set_grad_enabled(grad), autocast(ctx.device):
            if frozen is not None:  # cached features of the frozen backbone: the head only
                cached = dict(zip(("weak", "strong"), frozen.views(epoch, index)))
                inputs = [cached[v] for v in views]

                def run(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                    return x, models.head_forward(x)
            else:
                inputs = [getattr(batch, v) for v in views]
                run = models.forward
            if len(views) > 1 and not separate:
                feats, logits = run(torch.cat(inputs))
                outputs = list(zip(feats.chunk(len(views)), logits.chunk(len(views))))
            else:
                outputs = [run(x) for x in inputs]
        for view, (feats, logits) in zip(views, outputs):
            setattr(batch, f"features_{view}", feats.float())
            setattr(batch, f"logits_{view}", logits.float())

    def fill(batch: Batch, name: str) -> None:
        if name in ("weak", "strong"):
            setattr(batch, name, images(name))
        else:
            forward(batch, [name.rsplit("_", 1)[-1]])

    batch = Batch(positions=index.to(ctx.device), epoch=epoch, step=step, _view_fn=fill,
                  _raw_fn=lambda u=uint8: ctx.views.raw(u),
                  _encode_fn=lambda x: _encode(models.backbone, x, ctx.device), _gather_fn=gather)
    up_front = [v for v in ("weak", "strong") if v in declared]
    for view in up_front:  # drawn in this order, so the augmentations do not depend on which plugin reads first
        setattr(batch, view, images(view))
    if up_front and not separate:
        forward(batch, up_front)
    if frozen is not None:  # the raw view's features too (CDC's calibration head reads them every step)
        raw = frozen.raw_of(index)
        batch._cache.update({"features_raw_nograd": raw, "features_raw_grad": raw})
    return batch


def _plan(batch: Batch, epoch: int, k: int, calibration: CalibrationPlugin, selection: SelectionPlugin,
          probe: Probe, totals: EpochTotals, per_cluster: torch.Tensor, full_check: bool) -> list[Selection]:
    """Confidence and selection of a (planned) batch, counted once into the epoch's figures."""
    with torch.no_grad():
        with plugin_call("self_label", calibration, epoch, "confidence"):
            confidence = calibration.confidence(batch)
        confidence = contract.probabilities(Call(calibration, "confidence", "self_label", epoch), confidence,
                                            len(batch), k, full_check).detach()
    with plugin_call("self_label", selection, epoch, "select"):
        selections = contract.selections(Call(selection, "select", "self_label", epoch),
                                         selection.select(batch, confidence), len(batch), k, full_check)
    chosen = torch.zeros(len(batch), dtype=torch.bool, device=batch.positions.device)
    for sel in selections:
        totals.add(f"selected_{sel.name}", torch.tensor(float(len(sel))))
        chosen[sel.rows] = True
        correct = probe.correct(batch.positions[sel.rows], sel.labels)
        if correct is not None:
            totals.add(f"correct_{sel.name}", correct)
        if sel is selections[0]:  # index_add, unlike bincount, needs no host read of the largest label
            per_cluster.index_add_(0, sel.labels.clamp(0, k - 1), (sel.labels < k).float())
    totals.add("selected_any", chosen.sum())
    return selections


def _losses(batch: Batch, selections: list[Selection], epoch: int, calibration: CalibrationPlugin,
            generation: GenerationPlugin, models: Models) -> dict[str, torch.Tensor]:
    """The step's loss terms: each selection's cross-entropy, then the calibration and generation plugins'."""
    losses = {f"loss_{sel.name}": selection_loss(batch, sel) for sel in selections}
    with plugin_call("self_label", calibration, epoch, "loss"):
        extra = contract.losses(Call(calibration, "loss", "self_label", epoch), calibration.loss(batch))
        losses.update({f"loss_{n}": v for n, v in extra.items()})
    with plugin_call("self_label", generation, epoch, "loss"):
        extra = contract.losses(Call(generation, "loss", "self_label", epoch), generation.loss(batch, models.forward))
        losses.update({f"loss_{n}": v for n, v in extra.items()})
    return losses


def _sum_over_ranks(par: "DataParallel", totals: EpochTotals, seen: int, per_cluster: torch.Tensor,
                    device: torch.device) -> int:
    """Data-parallel: the epoch's sums over all ranks (loss sums averaged, as each rank ran every step)."""
    names = sorted(totals.sums)
    flat = torch.stack([totals.sums[n].to(device).reshape(()) for n in names] + [torch.tensor(float(seen), device=device)])
    par.sum_(flat)
    par.sum_(per_cluster)
    for i, n in enumerate(names):
        totals.sums[n] = flat[i] / par.world if n.startswith("loss") else flat[i]
    return int(flat[-1].item())


def _encode(backbone: nn.Module, images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Extra views' features (Batch.features_of) under the same autocast as the main forward."""
    with autocast(device):
        return backbone(images)


def _check_logits(batch: Batch, epoch: int, step: int) -> None:
    """Stop a diverged run (non-finite logits of a view the step computed), naming the likely fix."""
    for view in ("weak", "strong"):
        logits = batch.computed(f"logits_{view}")
        if logits is not None and not bool(torch.isfinite(logits.detach()).all()):
            raise TrainingError(f"stage self_label, epoch {epoch}, step {step}: non-finite logits from the clustering "
                                "head: training diverged (try a lower [train] lr or set grad_clip)")


def _check_finite(epoch: int, step: int, losses: dict[str, torch.Tensor]) -> None:
    """Stop the run naming the loss terms that are NaN or infinite (one host read)."""
    flags = torch.stack([torch.isfinite(v.detach()).all() for v in losses.values()]).tolist() if losses else []
    bad = [n for n, ok in zip(losses, flags) if not ok]
    if bad:
        raise TrainingError(f"stage self_label, epoch {epoch}, step {step}: non-finite loss in {', '.join(bad)}")


def _summarise(totals: EpochTotals, seen: int, per_cluster: torch.Tensor, selections_names: list[str]) -> dict[str, float]:
    values = {n: float(v) for n, v in totals.sums.items()}  # one host read per epoch
    steps = max(totals.steps, 1)
    out: dict[str, float] = {}
    for n, v in values.items():
        if n.startswith("loss"):
            out[n] = v / steps
    for n in selections_names:
        if n == "selected_any":
            out["selected_fraction"] = values[n] / max(seen, 1)
            continue
        term = n[len("selected_"):]
        out[f"selected_fraction_{term}"] = values[n] / max(seen, 1)
        if f"correct_{term}" in values and values[n] > 0:
            out[f"pseudo_label_acc_{term}"] = values[f"correct_{term}"] / values[n]
    first = next((n for n in selections_names if n != "selected_any"), None)
    if first and f"pseudo_label_acc_{first[len('selected_'):]}" in out:
        out["pseudo_label_acc"] = out[f"pseudo_label_acc_{first[len('selected_'):]}"]
    counts = per_cluster.cpu()
    out["selected_min_cluster"] = float(counts.min()) if counts.numel() else 0.0
    out["selected_empty_clusters"] = float((counts == 0).sum())
    return out

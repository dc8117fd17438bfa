"""Head-init `kmeans_pseudo_label` (GCC-style): k-means (or, with `partition`, spectral clustering of a kNN
graph, over-clustering merged by linkage, or the best of these by silhouette) on the features gives
pseudo-labels, then the head is trained on them with the backbone frozen, so self-labeling starts from that
partition."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from toolkit.api import Checkpointed, HeadInitPlugin, RunContext
from toolkit.ops.kmeans import kmeans
from toolkit.ops.merged import merged_labels
from toolkit.ops.partition import CANDIDATES, best_partition
from toolkit.ops.spectral import spectral_labels

HEAD_INIT_SALT = 2
CACHE_SALT = 7  # the cached views' draws, apart from the epochs' own
STAGE = "head_init"


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    epochs: int = Field(20, ge=0, description="epochs of head training on the k-means labels")
    lr: float = Field(1e-3, gt=0)
    batch_size: int = Field(256, ge=2)
    view: Literal["raw", "weak", "strong"] = Field("weak", description="view the head is trained on")
    niter: int = Field(50, ge=1, description="k-means iterations")
    nredo: int = Field(5, ge=1, description="k-means restarts (best inertia kept)")
    spherical: bool = Field(True, description="k-means on L2-normalised features (cosine)")
    partition: Literal["kmeans", "spectral", "merged", "auto"] = Field(
        "kmeans", description="how the pseudo-labels are found: k-means, spectral clustering of a kNN graph of the "
                              "features (follows density), merged: k-means into 5K small clusters merged to K by "
                              "average linkage (keeps long tails apart), or auto: all of them (the graph with 10 "
                              "and 30 neighbours) and the partition with the highest silhouette kept (k-means unless "
                              "another is higher by 0.01), without "
                              "labels (toolkit/ops/partition.py; logged as head_init_silhouette_* and "
                              "head_init_partition_choice, the index in kmeans, spectral-10, spectral-30, merged)")
    neighbours: int = Field(10, ge=2, description="partition = spectral: neighbours per image in the graph")
    cached_views: int = Field(
        0, ge=0, description="> 0: encode the (frozen) backbone's view of every image this many times once and "
                             "cycle through the copies by epoch, instead of encoding every batch of every epoch "
                             "(finite augmentation; benchmarks/feature_cache.py measures speed and accuracy)")


class KMeansPseudoLabelHeadInit(HeadInitPlugin[Options]):
    """k-means pseudo-labels on backbone features, then a head trained on them (backbone frozen)."""

    def init_head(self, ctx: RunContext, backbone: nn.Module, features: torch.Tensor,
                  pretrained_head: nn.Module | None) -> nn.Module:
        o = self.options
        with ctx.seeded():
            head = ctx.build_head(int(features.shape[1]))
        optimizer = torch.optim.Adam(head.parameters(), lr=o.lr)
        labels = torch.empty(0, dtype=torch.long)  # the k-means labels: computed once, kept by resume points
        loop = ctx.epoch_loop(STAGE, o.epochs, Checkpointed(labels=labels, head=head, optimizer=optimizer),
                              salt=(HEAD_INIT_SALT,), plugin="kmeans_pseudo_label")
        if loop.resumed_from is None:
            if o.partition == "auto":
                chosen, found, scores = best_partition(features, ctx.num_clusters, ctx.seed, niter=o.niter,
                                                       nredo=o.nredo, spherical=o.spherical)
                ctx.log_epoch(STAGE, 0, {**{f"silhouette_{n.replace('-', '')}": v for n, v in scores.items()},
                                         "partition_choice": float(list(CANDIDATES).index(chosen))})
            elif o.partition == "spectral":
                found = spectral_labels(features, ctx.num_clusters, o.neighbours, ctx.seed)
            elif o.partition == "merged":
                found = merged_labels(features, ctx.num_clusters, ctx.seed, linkage="average", niter=o.niter)
            else:
                found = kmeans(features, ctx.num_clusters, niter=o.niter, nredo=o.nredo, seed=ctx.seed,
                               spherical=o.spherical).labels
            labels.resize_(len(found)).copy_(torch.as_tensor(found))
            loop.checkpoint(0)  # k-means can take minutes on large data: always keep its labels
        targets = labels.to(ctx.device)
        cached = (ctx.encode_copies(backbone, o.view, o.cached_views, HEAD_INIT_SALT, CACHE_SALT)
                  if o.cached_views and o.view != "raw" else None)
        backbone.eval()
        for epoch in loop:
            total, steps = 0.0, 0
            for index in ctx.batches(epoch.generator, o.batch_size):
                if len(index) < 2:
                    continue
                with torch.no_grad():
                    if o.view == "raw":
                        feats = features[index.to(features.device)]
                    elif cached is not None:
                        feats = cached[(epoch.number - 1) % len(cached)][index.to(cached.device)]
                    else:
                        feats = backbone(ctx.view(o.view, index, epoch.generator))
                loss = F.cross_entropy(head(feats.float()), targets[index.to(ctx.device)])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total, steps = total + float(loss.detach()), steps + 1
            epoch.report(loss=total / max(steps, 1))
        backbone.train()
        return head

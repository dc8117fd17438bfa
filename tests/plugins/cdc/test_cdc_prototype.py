"""Prototype head init: Property 1 (the head's argmax reproduces k-means on separable data), both head
shapes, and the prototype separation ("orthogonalisation")."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from deepclust_cdc.head_init import PrototypeHeadInit
from deepclust_cdc.prototypes import row_normalise, separate
from toolkit.metrics import cluster_acc
from toolkit.nn.heads import ClusterHead
from toolkit.ops.kmeans import kmeans


def _blobs(n_per: int = 60, k: int = 4, dim: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, dim, generator=g) * 4
    labels = torch.arange(k).repeat_interleave(n_per)
    return centres[labels] + 0.3 * torch.randn(len(labels), dim, generator=g), labels


def _ctx(k: int, hidden: int | None) -> SimpleNamespace:
    return SimpleNamespace(num_clusters=k, seed=0, build_head=lambda d: ClusterHead(d, k, hidden),
                           resume_point=lambda stage: None, save_point=lambda *a, **kw: None, warn=print)


@pytest.mark.parametrize("hidden", [32, None])
@pytest.mark.parametrize("orthogonalize", [True, False])
def test_property1_head_output_matches_kmeans(hidden: int | None, orthogonalize: bool) -> None:
    feats, _ = _blobs()
    plugin = PrototypeHeadInit(PrototypeHeadInit.Options(nredo=2, ortho_steps=100, orthogonalize=orthogonalize))
    head = plugin.init_head(_ctx(4, hidden), None, feats, None)  # type: ignore[arg-type]
    assert torch.count_nonzero(head.last.bias) == 0 and torch.count_nonzero(head.first.bias) == 0
    head.eval()
    with torch.no_grad():
        out = head(feats).argmax(1).numpy()
    reference = kmeans(feats, 4, nredo=3, seed=1).labels
    assert cluster_acc(out, reference) == 1.0
    assert len(set(out.tolist())) == 4


def test_random_head_does_not_reproduce_kmeans() -> None:
    """The property is not automatic: a default-initialised head scrambles the same blobs."""
    feats, _ = _blobs()
    torch.manual_seed(0)
    head = ClusterHead(16, 4, 32).eval()
    with torch.no_grad():
        out = head(feats).argmax(1).numpy()
    assert cluster_acc(out, kmeans(feats, 4, nredo=3, seed=1).labels) < 0.95


def test_linear_property1_exact_on_unit_prototypes() -> None:
    """Property 1 on the plugin's own head: with unit_prototypes the linear head's argmax is the nearest of its
    prototypes for every image, even on data with no cluster structure; k-means centroids of unequal norm
    (the default) break it on some images."""
    feats = torch.randn(300, 16, generator=torch.Generator().manual_seed(0))

    def agreement(unit: bool) -> float:
        options = PrototypeHeadInit.Options(nredo=2, orthogonalize=False, unit_prototypes=unit)
        head = PrototypeHeadInit(options).init_head(_ctx(5, None), None, feats, None)  # type: ignore[arg-type]
        head.eval()
        with torch.no_grad():
            out = head(feats).argmax(1)
        return float((out == torch.cdist(feats, head.last.weight).argmin(1)).float().mean())

    assert agreement(unit=True) == 1.0
    assert agreement(unit=False) < 1.0


def test_separation_pushes_prototypes_apart() -> None:
    g = torch.Generator().manual_seed(0)
    base = torch.rand(1, 32, generator=g)
    protos = base + 0.2 * torch.rand(8, 32, generator=g)  # similar, all-positive rows (cosine ~0.9)
    before = F.normalize(protos, dim=1) @ F.normalize(protos, dim=1).t()
    after_w = separate(protos, steps=300)
    after = F.normalize(after_w, dim=1) @ F.normalize(after_w, dim=1).t()
    off = ~torch.eye(8, dtype=torch.bool)
    assert after[off].max() < before[off].min()
    assert after[off].abs().mean() < 0.3
    assert torch.equal(separate(protos, steps=0), protos)


def test_too_few_images_for_the_hidden_prototypes_is_an_error() -> None:
    from toolkit.errors import PluginError

    with pytest.raises(PluginError, match="prototypes need"):
        PrototypeHeadInit().init_head(_ctx(4, 512), None, torch.randn(100, 16), None)  # type: ignore[arg-type]


@pytest.mark.parametrize("variant", [
    {"hidden_normalise": "l2"},
    {"hidden_normalise": "none"},
    {"hidden_from": "separated"},
    {"last_init": "feature_kmeans"},
    {"last_init": "feature_kmeans", "hidden_from": "separated"},
    {"unit_prototypes": True},
    {"last_init": "feature_kmeans", "restart_pick": "balanced"},
    {"restart_pick": "balanced", "restart_tolerance": 0.05},
])
def test_label_free_variants_keep_property1(variant: dict) -> None:
    """Every head-init variant still reproduces k-means on well separated blobs."""
    feats, _ = _blobs()
    plugin = PrototypeHeadInit(PrototypeHeadInit.Options(nredo=2, ortho_steps=50, **variant))
    head = plugin.init_head(_ctx(4, 32), None, feats, None).eval()  # type: ignore[arg-type]
    with torch.no_grad():
        out = head(feats).argmax(1).numpy()
    assert cluster_acc(out, kmeans(feats, 4, nredo=3, seed=1).labels) == 1.0


def test_hidden_from_separated_changes_only_the_last_layer() -> None:
    """Layer 1 is the same separated prototypes either way; the second step then sees different activations."""
    feats, _ = _blobs()
    heads = {how: PrototypeHeadInit(PrototypeHeadInit.Options(nredo=2, ortho_steps=50, hidden_from=how))
             .init_head(_ctx(4, 32), None, feats, None) for how in ("prototypes", "separated")}  # type: ignore[arg-type]
    assert torch.allclose(heads["prototypes"].first.weight, heads["separated"].first.weight)
    assert not torch.allclose(heads["prototypes"].last.weight, heads["separated"].last.weight)


def test_group_means_and_normalisations() -> None:
    from deepclust_cdc.prototypes import group_means, normalise_rows, prototypes

    feats, labels = _blobs(k=3)
    means = group_means(feats, feats, 3, niter=20, nredo=2, seed=0, normalise="none")
    ordered = torch.stack([feats[labels == c].mean(0) for c in range(3)])
    assert torch.cdist(means, ordered).min(1).values.max() < 1e-4  # the blobs' own means, in some order
    assert torch.allclose(normalise_rows(feats, "l2").norm(dim=1), torch.ones(len(feats)))
    assert torch.equal(normalise_rows(feats, "none"), feats)
    assert torch.allclose(prototypes(feats, 3, niter=20, nredo=2, seed=0, unit=True).norm(dim=1), torch.ones(3))
    with pytest.raises(ValueError, match="unknown normalisation"):
        normalise_rows(feats, "l1")  # type: ignore[arg-type]


def test_balanced_restart_pick() -> None:
    """`restart_pick = balanced`: of the restarts within the inertia tolerance, the most even cluster sizes.
    Data: five equal random blobs clustered into 4, so every restart merges some pair; the pick is checked
    against all the restarts it chose from, for a tight, a middle and a no-limit tolerance."""
    import numpy as np

    from deepclust_cdc.prototypes import kmeans_restarts

    x, _ = _blobs(n_per=50, k=5, dim=8, seed=3)
    x = x.numpy()
    k, nredo, seed = 4, 12, 5
    runs = [kmeans(x, k, niter=20, nredo=1, seed=seed + 7919 * r) for r in range(nredo)]

    def entropy(labels: np.ndarray) -> float:
        p = np.bincount(labels, minlength=k) / len(labels)
        p = p[p > 0]
        return float(-(p * np.log(p)).sum())

    best = min(r.inertia for r in runs)
    for tol in (0.0, 0.05, 10.0):
        chosen = kmeans_restarts(torch.as_tensor(x), k, niter=20, nredo=nredo, seed=seed, pick="balanced",
                                 tolerance=tol)
        eligible = [r for r in runs if r.inertia <= best * (1 + tol) + 1e-12]
        assert chosen.inertia <= best * (1 + tol) + 1e-6
        assert entropy(np.asarray(chosen.labels)) == pytest.approx(max(entropy(np.asarray(r.labels)) for r in eligible))
    loosest = kmeans_restarts(torch.as_tensor(x), k, niter=20, nredo=nredo, seed=seed, pick="balanced", tolerance=10.0)
    tight = kmeans_restarts(torch.as_tensor(x), k, niter=20, nredo=nredo, seed=seed, pick="balanced", tolerance=0.0)
    assert entropy(np.asarray(loosest.labels)) >= entropy(np.asarray(tight.labels))
    assert tight.inertia == pytest.approx(best)


def test_most_balanced_takes_even_sizes_within_the_tolerance_only() -> None:
    """Hand-made restarts: a merged partition (lowest inertia, sizes 40/20/20/20/... uneven) and an even one
    0.5% worse, and an even-er one 5% worse."""
    import numpy as np

    from deepclust_cdc.prototypes import most_balanced
    from toolkit.ops.kmeans import KMeansResult

    def run(sizes: list[int], inertia: float) -> KMeansResult:
        labels = np.repeat(np.arange(len(sizes)), sizes)
        return KMeansResult(np.zeros((4, 2), np.float32), labels, inertia)

    merged, even, perfect = run([40, 30, 20, 10], 100.0), run([30, 25, 25, 20], 100.5), run([25, 25, 25, 25], 105.0)
    assert most_balanced([merged, even, perfect], 4, 0.0) is merged
    assert most_balanced([merged, even, perfect], 4, 0.01) is even
    assert most_balanced([even, merged, perfect], 4, 0.1) is perfect


@pytest.mark.parametrize("variant", ["conference", "arxiv"])
def test_init_variants_cluster_what_their_paper_version_says(variant: str) -> None:
    """conference: k-means of row-normalised z, then of row-normalised ReLU(h); arxiv: of raw z, then raw h = z W1^T."""
    feats, _ = _blobs()
    plugin = PrototypeHeadInit(PrototypeHeadInit.Options(nredo=2, niter=30, orthogonalize=False, variant=variant))
    head = plugin.init_head(_ctx(4, 8), None, feats, None)  # type: ignore[arg-type]
    arxiv = variant == "arxiv"
    w1 = kmeans(feats if arxiv else row_normalise(feats), 8, niter=30, nredo=2, seed=0).centroids
    assert torch.allclose(head.first.weight, torch.as_tensor(w1), atol=1e-5)
    h = feats @ torch.as_tensor(w1).t()
    w2 = kmeans(h if arxiv else row_normalise(torch.relu(h)), 4, niter=30, nredo=2, seed=0).centroids
    assert torch.allclose(head.last.weight, torch.as_tensor(w2), atol=1e-4)

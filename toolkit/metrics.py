"""Clustering quality (ACC, NMI, ARI), calibration (ECE) and failure-rejection (AUROC, AURC, FPR95)
metrics; all return python floats.

Cluster ids are arbitrary, so accuracy first matches clusters to classes (Hungarian, one-to-one).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, roc_auc_score, roc_curve

from toolkit.ops.matching import contingency, hungarian_map


def cluster_acc(pred: np.ndarray, target: np.ndarray) -> float:
    """Best one-to-one cluster->class accuracy; clusters left unmatched count as wrong."""
    table = contingency(pred, target)
    if table.sum() == 0:
        raise ValueError("cluster_acc needs at least one sample")
    mapping = hungarian_map(pred, target)
    matched = mapping >= 0
    return float(table[np.flatnonzero(matched), mapping[matched]].sum() / table.sum())


def many_to_one_acc(pred: np.ndarray, target: np.ndarray) -> float:
    """Accuracy when every cluster takes its majority class (fair for over-clustering, K > classes)."""
    table = contingency(pred, target)
    if table.sum() == 0:
        raise ValueError("many_to_one_acc needs at least one sample")
    return float(table.max(axis=1).sum() / table.sum())


def nmi(pred: np.ndarray, target: np.ndarray) -> float:
    """Normalised mutual information, arithmetic-mean normalisation (the usual paper convention)."""
    return float(normalized_mutual_info_score(target, pred, average_method="arithmetic"))


def nmi_geometric(pred: np.ndarray, target: np.ndarray) -> float:
    """NMI with geometric-mean normalisation (used by some older papers)."""
    return float(normalized_mutual_info_score(target, pred, average_method="geometric"))


def ari(pred: np.ndarray, target: np.ndarray) -> float:
    """Adjusted Rand index: 1 = identical partitions, ~0 = chance (slightly negative is possible)."""
    return float(adjusted_rand_score(target, pred))


def _bin_index(confidence: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Edges of equal-width bins (0,1/n], ..., ((n-1)/n,1] and each confidence's bin (0 goes to bin 0)."""
    if n_bins < 1:
        raise ValueError("n_bins must be >= 1")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    return edges, idx


def reliability_bins(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> dict[str, np.ndarray]:
    """Per-bin accuracy, mean confidence and count; empty bins have acc = conf = 0 and count 0."""
    conf = np.asarray(confidence, dtype=np.float64).ravel()
    hit = np.asarray(correct, dtype=np.float64).ravel()
    if conf.shape != hit.shape:
        raise ValueError(f"confidence and correct differ in length: {conf.size} vs {hit.size}")
    edges, idx = _bin_index(conf, n_bins)
    count = np.bincount(idx, minlength=n_bins).astype(np.int64)
    safe = np.maximum(count, 1)
    return {
        "bin_edges": edges,
        "bin_acc": np.bincount(idx, weights=hit, minlength=n_bins) / safe,
        "bin_conf": np.bincount(idx, weights=conf, minlength=n_bins) / safe,
        "bin_count": count,
    }


def ece(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> float:
    """Expected calibration error: sum over bins of (bin share) * |accuracy - mean confidence|."""
    bins = reliability_bins(confidence, correct, n_bins)
    total = bins["bin_count"].sum()
    if total == 0:
        raise ValueError("ece needs at least one sample")
    gap = np.abs(bins["bin_acc"] - bins["bin_conf"])
    return float((bins["bin_count"] * gap).sum() / total)


def _rejection_inputs(confidence: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    conf = np.asarray(confidence, dtype=np.float64).ravel()
    hit = np.asarray(correct, dtype=bool).ravel()
    if conf.shape != hit.shape or conf.size == 0:
        raise ValueError(f"confidence and correct must be non-empty and equal in length: {conf.size} vs {hit.size}")
    return conf, hit


def failure_auroc(confidence: np.ndarray, correct: np.ndarray) -> float:
    """AUROC of confidence separating correct (positive) from wrong predictions; 1 = perfect ranking.

    Undefined (ValueError) when every prediction is correct or every one is wrong.
    """
    conf, hit = _rejection_inputs(confidence, correct)
    if hit.all() or not hit.any():
        raise ValueError("failure AUROC needs both correct and wrong predictions")
    return float(roc_auc_score(hit, conf))


def aurc(confidence: np.ndarray, correct: np.ndarray) -> float:
    """Area under the risk-coverage curve: mean error rate of the k most confident, over k = 1..N.

    Ties in confidence are broken pessimistically (wrong first) so the value never flatters a model
    that gives everything the same score. Lower is better; 0 when nothing is wrong.
    """
    conf, hit = _rejection_inputs(confidence, correct)
    order = np.lexsort((hit, -conf))  # by confidence descending, wrong before right among ties
    errors = np.cumsum(~hit[order])
    return float(np.mean(errors / np.arange(1, conf.size + 1)))


def fpr_at_95_tpr(confidence: np.ndarray, correct: np.ndarray) -> float:
    """Share of wrong predictions still accepted when the threshold keeps 95% of the correct ones."""
    conf, hit = _rejection_inputs(confidence, correct)
    if hit.all() or not hit.any():
        raise ValueError("FPR95 needs both correct and wrong predictions")
    fpr, tpr, _ = roc_curve(hit, conf, drop_intermediate=False)
    return float(fpr[np.searchsorted(tpr, 0.95, side="left")])


def map_predictions(
    pred: np.ndarray, target: np.ndarray, n_pred: int | None = None, n_true: int | None = None
) -> np.ndarray:
    """Cluster ids rewritten as the class ids they match one-to-one (-1 for unmatched clusters)."""
    mapping = hungarian_map(pred, target, n_pred, n_true)
    return mapping[np.asarray(pred, dtype=np.int64)]


def _size_entropy(pred: np.ndarray, k: int) -> tuple[float, int]:
    """Normalised entropy of cluster sizes (1 = balanced) and the number of empty clusters."""
    sizes = np.bincount(pred, minlength=k).astype(np.float64)
    p = sizes[sizes > 0] / sizes.sum()
    entropy = float(-(p * np.log(p)).sum() / np.log(k)) if k > 1 else 1.0
    return entropy, int((sizes == 0).sum())


def cluster_sizes(pred: np.ndarray, k: int) -> dict[str, float]:
    """The estimated cluster sizes (label-free): the largest and smallest non-empty cluster as fractions of
    the data and their ratio, the imbalance the model currently believes in (1 = balanced). Logged every
    epoch, so a long tail being flattened (or one cluster swallowing the rest) shows in MLflow."""
    sizes = np.bincount(pred, minlength=k)
    used = sizes[sizes > 0]
    return {"size_largest": float(used.max() / len(pred)), "size_smallest": float(used.min() / len(pred)),
            "size_ratio": float(used.max() / used.min())}


def evaluate(probs: np.ndarray, target: np.ndarray | None = None) -> dict[str, float]:
    """All metrics for soft assignments [N, K]; label-free ones always, supervised ones with target."""
    probs = np.asarray(probs)
    if probs.ndim != 2 or probs.shape[0] == 0:
        raise ValueError(f"probs must be a non-empty [N, K] array, got shape {probs.shape}")
    k = probs.shape[1]
    pred = probs.argmax(axis=1).astype(np.int64)
    confidence = probs.max(axis=1).astype(np.float64)
    entropy, empty = _size_entropy(pred, k)
    out = {"mean_confidence": float(confidence.mean()), "cluster_entropy": entropy, "empty_clusters": float(empty),
           **cluster_sizes(pred, k)}
    if target is None:
        return out
    target = np.asarray(target, dtype=np.int64)
    if target.shape != pred.shape:
        raise ValueError(f"target has {target.size} labels for {pred.size} predictions")
    correct = map_predictions(pred, target, n_pred=k) == target
    out.update(
        acc=cluster_acc(pred, target),
        many_to_one_acc=many_to_one_acc(pred, target),
        nmi=nmi(pred, target),
        nmi_geometric=nmi_geometric(pred, target),
        ari=ari(pred, target),
        ece=ece(confidence, correct),
        aurc=aurc(confidence, correct),
    )
    if correct.any() and not correct.all():  # AUROC / FPR95 are undefined without both outcomes
        out.update(auroc=failure_auroc(confidence, correct), fpr95=fpr_at_95_tpr(confidence, correct))
    return out

"""What a search optimises when the recipe does not say: the label-free score, and the metrics that need labels."""

from __future__ import annotations

from toolkit.metric_names import LABELLED_METRICS

#: Metrics that need ground truth: refused as the objective of a search on unlabelled data.
SUPERVISED = LABELLED_METRICS


def balanced_confidence(metrics: dict[str, float]) -> float | None:
    """Label-free score: mean max-probability times normalised cluster-size entropy (0 if all in one cluster)."""
    conf, ent = metrics.get("mean_confidence"), metrics.get("cluster_entropy")
    if conf is None or ent is None:
        return None
    return float(conf) * float(ent)

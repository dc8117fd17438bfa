"""The one catalogue of metric names, importable without numpy or scikit-learn.

The summary, the results table, a search's default direction and the refusal of supervised objectives on
unlabelled data all read these lists, so a new metric is named in one place.
"""

from __future__ import annotations

#: Metrics that need ground truth (never an objective on unlabelled data, never seen by a plugin).
LABELLED_METRICS = frozenset({"acc", "nmi", "ari", "nmi_geometric", "many_to_one_acc", "ece", "aurc", "auroc",
                              "fpr95", "pseudo_label_acc"})
#: Headline metrics every summary carries (None when the data set has no labels), in display order.
HEADLINE_METRICS = ("acc", "nmi", "ari", "ece", "nmi_geometric", "many_to_one_acc")
#: Metrics where larger is better / smaller is better (a search's default `mode`).
MAXIMISE = frozenset({"acc", "nmi", "ari", "nmi_geometric", "many_to_one_acc", "mean_confidence", "cluster_entropy",
                      "balanced_confidence", "auroc", "pseudo_label_acc"})
MINIMISE = frozenset({"loss", "ece", "aurc", "fpr95", "empty_clusters"})

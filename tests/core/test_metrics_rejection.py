"""Failure-rejection metrics (AUROC, AURC, FPR95) on hand-computed cases, and their place in evaluate()."""

from __future__ import annotations

import numpy as np
import pytest

from toolkit.metrics import aurc, evaluate, failure_auroc, fpr_at_95_tpr

CONF = np.array([0.9, 0.8, 0.7, 0.6])
CORRECT = np.array([True, False, True, False])


def test_auroc_counts_correctly_ordered_pairs() -> None:
    # right {0.9, 0.7} vs wrong {0.8, 0.6}: 3 of 4 pairs have the right one more confident
    assert failure_auroc(CONF, CORRECT) == pytest.approx(0.75)
    assert failure_auroc(CONF, CONF > 0.75) == pytest.approx(1.0)
    assert failure_auroc(CONF, CONF < 0.75) == pytest.approx(0.0)


def test_aurc_is_mean_risk_over_coverages() -> None:
    # most confident first: right, wrong, right, wrong -> risks 0, 1/2, 1/3, 2/4
    assert aurc(CONF, CORRECT) == pytest.approx((0 + 1 / 2 + 1 / 3 + 2 / 4) / 4)
    assert aurc(CONF, np.ones(4, bool)) == 0.0
    assert aurc(CONF, np.zeros(4, bool)) == 1.0


def test_aurc_breaks_ties_pessimistically() -> None:
    # equal confidence: the wrong one counts first -> risks 1, 1/2
    assert aurc(np.array([0.5, 0.5]), np.array([True, False])) == pytest.approx(0.75)


def test_fpr95() -> None:
    # keeping 95% of the 2 correct ones means keeping both (threshold 0.7): 1 of 2 wrong ones passes
    assert fpr_at_95_tpr(CONF, CORRECT) == pytest.approx(0.5)
    conf = np.linspace(1.0, 0.01, 100)
    correct = np.arange(100) < 80  # perfectly ranked: no wrong one needed to reach 95% TPR
    assert fpr_at_95_tpr(conf, correct) == 0.0
    # 20 right above 80 wrong above 20 right: 95% TPR needs 39 right -> all 80 wrong pass
    correct = np.r_[np.ones(20, bool), np.zeros(60, bool), np.ones(20, bool)]
    assert fpr_at_95_tpr(conf, correct) == pytest.approx(1.0)


def test_undefined_cases_raise() -> None:
    with pytest.raises(ValueError):
        failure_auroc(CONF, np.ones(4, bool))
    with pytest.raises(ValueError):
        fpr_at_95_tpr(CONF, np.zeros(4, bool))
    with pytest.raises(ValueError):
        aurc(np.array([]), np.array([], bool))


def test_evaluate_reports_rejection_metrics_with_labels_only() -> None:
    probs = np.array([[0.95, 0.05], [0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4]])
    target = np.array([0, 0, 1, 0, 1])  # cluster 0 -> class 0 (2 of 3); rows 0-2 right, 3 and 4 wrong
    out = evaluate(probs, target)
    assert out["auroc"] == pytest.approx(failure_auroc(probs.max(1), np.array([1, 1, 1, 0, 0], bool)))
    assert out["auroc"] == pytest.approx(1.0) and out["fpr95"] == 0.0
    assert out["aurc"] == pytest.approx((0 + 0 + 0 + 1 / 4 + 2 / 5) / 5)
    assert "auroc" not in evaluate(probs) and "aurc" not in evaluate(probs)
    perfect = evaluate(probs, np.array([0, 0, 1, 1, 0]))
    assert "auroc" not in perfect and perfect["aurc"] == 0.0

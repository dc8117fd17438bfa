"""Metric values checked against hand computation (and sklearn where it is the reference)."""

import math

import numpy as np
import pytest
from sklearn.metrics import normalized_mutual_info_score

from toolkit import metrics as M


def test_acc_is_one_for_permuted_labels():
    target = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([1, 1, 2, 2, 0, 0])
    assert M.cluster_acc(pred, target) == 1.0
    assert M.nmi(pred, target) == pytest.approx(1.0)
    assert M.ari(pred, target) == pytest.approx(1.0)


def test_acc_hand_computed_six_samples():
    # clusters x classes: c0 {1:1}, c1 {1:1, 2:2}, c2 {0:2}; best match c2->0, c1->2, c0->1 = 5 of 6
    target = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([2, 2, 0, 1, 1, 1])
    assert M.cluster_acc(pred, target) == pytest.approx(5 / 6)
    np.testing.assert_array_equal(M.map_predictions(pred, target), [0, 0, 1, 2, 2, 2])


def test_more_clusters_than_classes_unmatched_are_wrong():
    target = np.array([0, 0, 0, 1, 1, 1])
    pred = np.array([0, 0, 1, 2, 2, 3])
    assert M.cluster_acc(pred, target) == pytest.approx(4 / 6)
    assert M.many_to_one_acc(pred, target) == 1.0
    np.testing.assert_array_equal(M.map_predictions(pred, target), [0, 0, -1, 1, 1, -1])


def test_fewer_clusters_than_classes():
    target = np.array([0, 1, 2, 2])
    pred = np.array([0, 0, 1, 1])
    assert M.cluster_acc(pred, target) == pytest.approx(3 / 4)
    assert M.many_to_one_acc(pred, target) == pytest.approx(3 / 4)


def test_empty_clusters_are_fine():
    target = np.array([0, 0, 1, 1])
    pred = np.array([0, 0, 3, 3])  # clusters 1 and 2 empty
    assert M.cluster_acc(pred, target) == 1.0


def test_many_to_one_majority():
    target = np.array([0, 0, 1, 1, 1, 2])
    pred = np.array([0, 0, 0, 0, 1, 1])  # c0 majority class 0 (2 of 4), c1 tie 1 each
    assert M.many_to_one_acc(pred, target) == pytest.approx(3 / 6)


def test_nmi_arithmetic_vs_geometric_hand_computed():
    target = np.array([0, 0, 1, 1])
    pred = np.array([0, 0, 0, 1])
    h_t = math.log(2)
    h_p = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    mi = 0.5 * math.log(4 / 3) + 0.25 * math.log(2 / 3) + 0.25 * math.log(2)
    arithmetic, geometric = mi / ((h_t + h_p) / 2), mi / math.sqrt(h_t * h_p)
    assert M.nmi(pred, target) == pytest.approx(arithmetic, abs=1e-12)
    assert M.nmi_geometric(pred, target) == pytest.approx(geometric, abs=1e-12)
    assert abs(arithmetic - geometric) > 1e-3
    assert M.nmi(pred, target) == pytest.approx(normalized_mutual_info_score(target, pred))


def test_ari_hand_computed():
    # sum C(n_ij,2)=1, rows (pred sizes 2,1,1)=1, cols (2,2)=2, C(4,2)=6 -> (1-1/3)/(1.5-1/3) = 4/7
    assert M.ari(np.array([0, 0, 1, 2]), np.array([0, 0, 1, 1])) == pytest.approx(4 / 7)


def test_ece_hand_computed_four_samples():
    conf = np.array([0.9, 0.7, 0.3, 0.85])
    correct = np.array([1, 0, 1, 1])
    # 5 bins: (0.8,1] acc 1 conf .875 w .5; (0.6,.8] acc 0 conf .7 w .25; (.2,.4] acc 1 conf .3 w .25
    assert M.ece(conf, correct, n_bins=5) == pytest.approx(0.5 * 0.125 + 0.25 * 0.7 + 0.25 * 0.7)
    assert M.ece(conf, correct) == pytest.approx(0.4125)
    bins = M.reliability_bins(conf, correct, n_bins=5)
    np.testing.assert_array_equal(bins["bin_count"], [0, 1, 0, 1, 2])
    np.testing.assert_allclose(bins["bin_acc"], [0, 1, 0, 0, 1])
    np.testing.assert_allclose(bins["bin_conf"], [0, 0.3, 0, 0.7, 0.875])
    assert len(bins["bin_edges"]) == 6


def test_ece_bin_edges_are_right_closed():
    bins = M.reliability_bins(np.array([0.0, 0.5, 1.0]), np.array([1, 1, 1]), n_bins=2)
    np.testing.assert_array_equal(bins["bin_count"], [2, 1])  # 0 and 0.5 in (0, .5]; 1.0 in (.5, 1]


def test_evaluate_keys_and_values():
    probs = np.array([[0.9, 0.1, 0.0], [0.8, 0.2, 0.0], [0.3, 0.7, 0.0], [0.4, 0.6, 0.0]])
    label_free = M.evaluate(probs)
    assert set(label_free) == {"mean_confidence", "cluster_entropy", "empty_clusters", "size_largest",
                               "size_smallest", "size_ratio"}
    assert label_free["mean_confidence"] == pytest.approx(0.75)
    # sizes of the non-empty clusters (2 and 2 of 4): balanced as far as the model knows
    assert (label_free["size_largest"], label_free["size_smallest"], label_free["size_ratio"]) == (0.5, 0.5, 1.0)
    assert label_free["empty_clusters"] == 1.0
    assert label_free["cluster_entropy"] == pytest.approx(math.log(2) / math.log(3))
    full = M.evaluate(probs, np.array([1, 1, 0, 1]))
    assert set(full) == set(label_free) | {"acc", "many_to_one_acc", "nmi", "nmi_geometric", "ari", "ece",
                                           "auroc", "aurc", "fpr95"}  # failure rejection: tests/core/test_metrics_rejection.py
    assert full["acc"] == pytest.approx(3 / 4)
    # mapped: c0->1, c1->0; correct = [1,1,1,0] at confidences .9 .8 .7 .6 (distinct of 15 bins)
    assert full["ece"] == pytest.approx((0.1 + 0.2 + 0.3 + 0.6) / 4)
    assert all(isinstance(v, float) for v in full.values())


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError):
        M.cluster_acc(np.array([0, 1]), np.array([0]))


def test_cluster_sizes_follow_a_long_tail():
    pred = np.repeat([0, 1, 2], [80, 15, 5])
    sizes = M.cluster_sizes(pred, 4)  # cluster 3 is empty: not the smallest, not in the ratio
    assert sizes == {"size_largest": 0.8, "size_smallest": 0.05, "size_ratio": 16.0}

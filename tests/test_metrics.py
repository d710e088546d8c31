"""The three accuracies against hand-worked cases."""

import numpy as np
import pytest

from clustnet.metrics import accuracies, clustering_accuracy, confusion_matrix


def test_perfect_clustering_under_a_permutation_is_100_percent():
    labels = np.array([5, 5, 6, 6, 7, 7, 8, 9])
    permutation = {5: 3, 6: 0, 7: 4, 8: 1, 9: 2}  # class -> DN
    assignments = np.array([permutation[c] for c in labels])
    assert clustering_accuracy(labels, assignments, [5, 6, 7, 8, 9], 5) == 1.0


def test_hand_worked_confusion_and_hungarian():
    # Classes 0,1,2; DN 2 takes most of class 0, DN 0 most of class 1, DN 1 all of class 2.
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2])
    chosen = np.array([2, 2, 0, 0, 0, 0, 2, 1, 1])
    assert confusion_matrix(labels, chosen, [0, 1, 2], 3).tolist() == [[1, 0, 2], [3, 0, 1], [0, 2, 0]]
    # Best bijection: 0->DN2 (2), 1->DN0 (3), 2->DN1 (2): 7 of 9.
    assert clustering_accuracy(labels, chosen, [0, 1, 2], 3) == pytest.approx(7 / 9)


def test_one_dn_for_everything_scores_the_largest_class():
    labels = np.array([0, 0, 0, 1, 2])
    assert clustering_accuracy(labels, np.zeros(5, int), [0, 1, 2], 3) == pytest.approx(3 / 5)


def test_accuracies_split_groups_and_binary():
    orig = np.array([0, 1, 5, 6, 0, 6])
    binary = np.isin(orig, [0, 1]).astype(int)
    log_probs = np.log(np.array([[0.2, 0.8], [0.3, 0.7], [0.9, 0.1], [0.6, 0.4], [0.7, 0.3], [0.1, 0.9]]))
    # argmax predicts 1,1,0,0,0,1 against targets 1,1,0,0,1,0: 4 of 6 right.
    clusters = np.eye(2)[[0, 1, 1, 0, 0, 0]]
    result = accuracies(orig, binary, log_probs, clusters, [0, 1], range(10))
    assert result["binary"] == pytest.approx(4 / 6)
    assert result["pos_clust"] == pytest.approx(1.0)  # 0->DN0, 1->DN1 (both images of 0 on DN0)
    assert result["neg_clust"] == pytest.approx(1.0)  # 5->DN1, 6->DN0

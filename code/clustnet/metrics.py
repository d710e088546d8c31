"""The three accuracies of the README: binary, and clustering within each group (Hungarian)."""

import numpy as np
from scipy.optimize import linear_sum_assignment


def confusion_matrix(labels, assignments, classes, n_clusters):
    """Counts (len(classes), n_clusters): row i = images of classes[i], column k = DN k."""
    labels, assignments = np.asarray(labels, dtype=np.int64), np.asarray(assignments, dtype=np.int64)
    row_of = np.full(max(max(classes), labels.max(initial=0)) + 1, -1)
    row_of[list(classes)] = np.arange(len(classes))
    rows = row_of[labels]
    if (rows < 0).any():
        raise ValueError("labels outside `classes`")
    counts = np.bincount(rows * n_clusters + assignments, minlength=len(classes) * n_clusters)
    return counts.reshape(len(classes), n_clusters)


def hungarian_matching(confusion):
    """The bijection classes <-> DNs that maximises the matched counts: (rows, columns)."""
    return linear_sum_assignment(confusion, maximize=True)


def clustering_accuracy(labels, assignments, classes, n_clusters):
    """Accuracy of the DN choice as a classifier, after the best class <-> DN bijection."""
    confusion = confusion_matrix(labels, assignments, classes, n_clusters)
    total = confusion.sum()
    if total == 0:
        return float("nan")
    rows, columns = hungarian_matching(confusion)
    return confusion[rows, columns].sum() / total


GROUP_NAMES = {"pos_clust": "positive", "neg_clust": "negative"}  # class_groups' groups, in words


def class_groups(pos_classes, all_classes):
    """{'pos_clust': the positive classes, 'neg_clust': the others}, each sorted: the two groups
    whose clusterings are scored apart."""
    return {"pos_clust": sorted(pos_classes), "neg_clust": sorted(set(all_classes) - set(pos_classes))}


def accuracies(orig_targets, bin_targets, log_probs, cluster_probs, pos_classes, all_classes):
    """{'binary', 'pos_clust', 'neg_clust'} for one net on one set of images (numpy arrays)."""
    orig_targets, bin_targets = np.asarray(orig_targets), np.asarray(bin_targets)
    result = {"binary": float((np.asarray(log_probs).argmax(axis=1) == bin_targets).mean())}
    if cluster_probs is not None:
        chosen = np.asarray(cluster_probs).argmax(axis=1)
        n_clusters = np.asarray(cluster_probs).shape[1]
        for name, classes in class_groups(pos_classes, all_classes).items():
            inside = np.isin(orig_targets, classes)
            result[name] = float(clustering_accuracy(orig_targets[inside], chosen[inside], classes, n_clusters))
    return result

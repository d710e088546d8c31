"""Figures, each saved atomically as a PNG."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .layout import atomic_path  # noqa: E402
from .metrics import hungarian_matching  # noqa: E402


def save_figure(figure, path):
    """Write `figure` to `path` as a PNG (complete or absent) and close it."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)


def permuted_confusion(confusion):
    """Columns (DNs) reordered so the Hungarian match of class i sits in column i;
    returns the matrix and the DN index of each column."""
    _, matched = hungarian_matching(confusion)
    order = list(matched) + [k for k in range(confusion.shape[1]) if k not in set(matched)]
    return confusion[:, order], order


def plot_confusion(confusion, class_names, path, title):
    """Confusion matrix classes x DNs, DNs permuted by the Hungarian assignment."""
    matrix, order = permuted_confusion(np.asarray(confusion))
    figure, axis = plt.subplots(figsize=(1.0 + 0.7 * matrix.shape[1], 1.0 + 0.6 * matrix.shape[0]))
    image = axis.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axis, label="images")
    for (row, column), count in np.ndenumerate(matrix):
        axis.text(column, row, str(count), ha="center", va="center", fontsize=7,
                  color="white" if count > matrix.max() / 2 else "black")
    axis.set_xticks(range(matrix.shape[1]), [f"DN {k}" for k in order])
    axis.set_yticks(range(matrix.shape[0]), class_names)
    axis.set_xlabel("detecting network chosen by the CN (Hungarian order)")
    axis.set_ylabel("class")
    axis.set_title(title)
    save_figure(figure, path)

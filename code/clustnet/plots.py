"""Figures, each saved atomically as a PNG."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

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


# The three accuracies of the README, told apart by line style as in its figures.
ACCURACY_STYLES = {"binary": ("--", "binary (P vs N)"),
                   "pos_clust": ("-", "positive clustering"),
                   "neg_clust": (":", "negative clustering")}
ACCURACY_HATCHES = {"binary": "//", "pos_clust": "", "neg_clust": ".."}


def net_colour(position):
    """One colour per net, by its position in the experiment's sorted list of nets."""
    return plt.get_cmap("tab10")(position % 10)


def nets_and_accuracies_legend(axis, accuracy_handles):
    """One legend outside the plot: the nets (colour), then the accuracies (style). One
    legend, because bbox_inches="tight" leaves out a second one added with add_artist."""
    net_handles, _ = axis.get_legend_handles_labels()
    heading = plt.Line2D([], [], linestyle="none", label="accuracy:")
    axis.legend(handles=net_handles + [heading] + accuracy_handles, loc="upper left", bbox_to_anchor=(1.01, 1),
                fontsize=8, title="net (colour)")


def epoch_axis(axis):
    """An x axis of whole epochs."""
    axis.set_xlabel("epoch")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))


def plot_accuracy_curves(table, net_labels, panels, path, title):
    """The 3 accuracies (%) per epoch: colour = net, line style = accuracy. One panel per
    entry of `panels` {panel title: prefix of its columns in `table`}, side by side on the
    same scales (the analysed set's columns have no prefix, the validation split's "val_"); a
    lone panel titled "" takes `title`."""
    figure, axes = plt.subplots(1, len(panels), figsize=(9 + 5.5 * (len(panels) - 1), 5), sharex=True,
                                sharey=True, squeeze=False)
    for axis, (panel, prefix) in zip(axes.flat, panels.items()):
        for position, (net, label) in enumerate(net_labels.items()):
            rows = table[table.net == net]
            for name, (style, _) in ACCURACY_STYLES.items():
                axis.plot(rows.epoch, 100 * rows[prefix + name], linestyle=style, color=net_colour(position),
                          marker=".", label=label if name == "pos_clust" else None)
        epoch_axis(axis)
        axis.set_ylim(0, 100)
        axis.grid(alpha=0.3)
        axis.set_title(panel or title)
    axes.flat[0].set_ylabel("accuracy (%)")
    nets_and_accuracies_legend(axes.flat[-1], [plt.Line2D([], [], color="black", linestyle=style, label=text)
                                               for style, text in ACCURACY_STYLES.values()])
    if len(panels) > 1:
        figure.suptitle(title)
    save_figure(figure, path)


def plot_total_variation(variation, net_labels, path, title):
    """Bars: total variation of each accuracy curve (in points), one group per net."""
    figure, axis = plt.subplots(figsize=(max(5, 1.4 * len(net_labels) + 2), 4.5))
    width = 0.8 / len(ACCURACY_STYLES)
    for position, (net, label) in enumerate(net_labels.items()):
        for offset, name in enumerate(ACCURACY_STYLES):
            axis.bar(position + (offset - 1) * width, 100 * variation.loc[net, name], width,
                     color=net_colour(position), hatch=ACCURACY_HATCHES[name], edgecolor="black",
                     label=label if offset == 1 else None)
    nets_and_accuracies_legend(axis, [Patch(facecolor="white", edgecolor="black", hatch=ACCURACY_HATCHES[name],
                                            label=text) for name, (_, text) in ACCURACY_STYLES.items()])
    axis.set_xticks(range(len(net_labels)), list(net_labels.values()), rotation=20, ha="right", fontsize=8)
    axis.set_ylabel("total variation: sum over epochs of |change| (points)")
    axis.set_title(title)
    save_figure(figure, path)


def plot_epoch_lines(frame, path, title, ylabel, legend_title, log_scale=False):
    """One line per column of `frame` (index: epoch)."""
    figure, axis = plt.subplots(figsize=(8, 4.5))
    for column in frame.columns:
        axis.plot(frame.index, frame[column], marker=".", label=str(column))
    if log_scale:
        axis.set_yscale("log")
    epoch_axis(axis)
    axis.set_ylabel(ylabel)
    axis.grid(alpha=0.3)
    axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, title=legend_title)
    axis.set_title(title)
    save_figure(figure, path)


def plot_sparsity(table, net_labels, path, title):
    """One panel per layer: fraction of zero activations per epoch, colour = net."""
    layers = list(dict.fromkeys(table.layer))
    columns = min(3, len(layers))
    rows = -(-len(layers) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.3 * rows), squeeze=False)
    for axis, layer in zip(axes.flat, layers):
        for position, (net, label) in enumerate(net_labels.items()):
            curve = table[(table.net == net) & (table.layer == layer)]
            if len(curve):
                axis.plot(curve.epoch, curve.zero_fraction, marker=".", color=net_colour(position), label=label)
        axis.set_title(layer, fontsize=10)
        epoch_axis(axis)
        axis.set_ylabel("fraction of zero activations")
        axis.set_ylim(-0.02, 1.02)
        axis.grid(alpha=0.3)
    for axis in axes.flat[len(layers):]:
        axis.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.0, 0.95), fontsize=8, title="net")
    figure.suptitle(title)
    figure.tight_layout()
    save_figure(figure, path)


def plot_cumulated_bars(shares, epochs, path, title):
    """Stacked bars, one per epoch: `shares[e, r]` = mean r-th largest CN probability."""
    figure, axis = plt.subplots(figsize=(max(5, 0.5 * len(epochs) + 3), 4.5))
    colours = plt.get_cmap("viridis")(np.linspace(0, 0.9, shares.shape[1]))
    bottom = np.zeros(len(epochs))
    for rank in range(shares.shape[1]):
        axis.bar([str(e) for e in epochs], shares[:, rank], bottom=bottom, color=colours[rank],
                 label=f"{rank + 1}{('st', 'nd', 'rd')[rank] if rank < 3 else 'th'} largest")
        bottom += shares[:, rank]
    axis.set_xlabel("epoch")
    axis.set_ylabel("mean CN probability, sorted and cumulated")
    axis.set_ylim(0, 1)
    axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, title="DN rank")
    axis.set_title(title)
    save_figure(figure, path)


def plot_embedding(points, labels, class_names, path, title):
    """2-D points coloured by class, with a legend of class names."""
    figure, axis = plt.subplots(figsize=(7, 6))
    colours = plt.get_cmap("tab10")
    for label in np.unique(labels):
        inside = labels == label
        axis.scatter(points[inside, 0], points[inside, 1], s=6, color=colours(label % 10),
                     label=class_names[label])
    axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, title="class", markerscale=2)
    axis.set_xlabel("t-SNE 1")
    axis.set_ylabel("t-SNE 2")
    axis.set_title(title)
    save_figure(figure, path)

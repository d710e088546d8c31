"""The files of an epoch, apart from the loop that trains it: ClustNet's scores CSV of each
set and the test set's confusion-matrix PNGs, each net's metrics log (and TensorBoard's
events), and the weights files. Each is a (path, write) pair for the writer (writer.py),
everything it writes a snapshot that training no longer changes."""

import math
from functools import partial

import numpy as np
import pandas as pd

from . import layout
from .checkpoint import weights_bytes, write_bytes
from .data import binary_targets
from .metrics import GROUP_NAMES, accuracies, class_groups, confusion_matrix
from .plots import plot_confusion
from .run_record import weights_entry
from .tensorboard_log import TensorBoardLog


def scores_writes(exp, run, scores, split, epoch):
    """Each net's accuracies on the set `split` (train, val or test), and the writes of its
    files: the scores CSV of every net and, for the test set, the two confusion-matrix PNGs
    (`scores` on the CPU, not changed afterwards)."""
    opts, data = run.opts, run.data
    labels = data.split(split)[1].cpu()
    bin_targets = binary_targets(labels, opts.pos_classes).numpy()
    labels = labels.numpy()
    all_classes = list(range(len(data.classes)))
    groups = class_groups(opts.pos_classes, all_classes)
    results, writes = [], []
    for net, ind_id in enumerate(run.ind_ids):
        log_probs, cluster_probs = scores.log_probs[net].numpy(), scores.cluster_probs[net].numpy()
        path = exp.scores_path(ind_id, epoch, split)
        writes.append((path, partial(layout.write_scores, path, labels, bin_targets, log_probs, cluster_probs)))
        results.append(accuracies(labels, bin_targets, log_probs, cluster_probs, opts.pos_classes, all_classes))
        if split == "test":
            for name, classes in groups.items():
                path = exp.confusion_path(ind_id, epoch, positive=name == "pos_clust")
                title = f"net {ind_id}, epoch {epoch}: {GROUP_NAMES[name]} classes"
                writes.append((path, partial(write_confusion, path, labels, cluster_probs, classes,
                                             [data.classes[c] for c in classes], opts.clust, title)))
    return results, writes


def write_confusion(path, labels, cluster_probs, classes, class_names, n_clusters, title):
    """The confusion-matrix PNG of `classes` against the DNs the CN chose."""
    inside = np.isin(labels, classes)
    confusion = confusion_matrix(labels[inside], cluster_probs[inside].argmax(axis=1), classes, n_clusters)
    plot_confusion(confusion, class_names, path, title)


def describe(split, measures):
    """A set's loss and accuracies as printed after each epoch."""
    return (f"{split} loss {measures['loss']:.4f} binary {100 * measures['binary']:.2f}% "
            f"pos {100 * measures['pos_clust']:.2f}% neg {100 * measures['neg_clust']:.2f}%")


def clustnet_report(exp, run, outputs, epoch):
    """ClustNet's files of an epoch: each set's scores CSVs (scores_writes); each net's
    measures {set: {"loss", "binary", "pos_clust", "neg_clust"}}; a printed line per net."""
    writes, measures = [], [{} for _ in run.ind_ids]
    for split, scores in outputs.items():
        results, split_writes = scores_writes(exp, run, scores, split, epoch)
        writes += split_writes
        for net, result in enumerate(results):
            measures[net][split] = {"loss": float(scores.loss[net]), **result}
    lines = [f"net {ind_id} epoch {epoch}: " + " | ".join(describe(split, values) for split, values in net.items())
             for ind_id, net in zip(run.ind_ids, measures)]
    return writes, measures, lines


def clustnet_pictures(exp, ind_id, epoch):
    """The PNGs of an epoch that TensorBoard shows: the test set's two confusion matrices."""
    return {f"confusion/{group}": exp.confusion_path(ind_id, epoch, positive)
            for group, positive in (("positive", True), ("negative", False))}


def weights_writes(exp, run, epoch, end_time):
    """The writes of every net's weights file after `epoch`, the weights serialised now."""
    writes = []
    for net, ind_id in enumerate(run.ind_ids):
        path = exp.weights_path(ind_id, epoch, run.kind)
        content = weights_bytes(run.kind, run.model, run.optimisers, run.generators, net, epoch,
                                run.ini_texts[net], weights_entry(run.runs[net], end_time), run.averaged)
        writes.append((path, partial(write_bytes, path, content)))
    return writes


class MetricsLogs:
    """Each net's metrics log (layout: one row per epoch of its learning rates, losses,
    accuracies, timings), rewritten whole each epoch, and with --tensorboard True the same
    numbers as TensorBoard events. A resumed net's log keeps its rows of the epochs before
    the one it continues from."""

    def __init__(self, exp, run, mode):
        self.exp, self.run, self.mode = exp, run, mode
        self.columns = layout.metrics_columns(run.optimisers, mode.step_terms(run.opts), run.data.splits,
                                              mode.accuracies)
        self.rows = [self.earlier_rows(ind_id) for ind_id in run.ind_ids]
        self.tensorboard = [TensorBoardLog(exp.tensorboard_dir(ind_id, run.kind), run.first_epoch, run.opts.epochs)
                            if run.opts.tensorboard else None for ind_id in run.ind_ids]

    def earlier_rows(self, ind_id):
        """The rows of the epochs before run.first_epoch in net `ind_id`'s log, if it has one."""
        path = self.exp.metrics_path(ind_id, self.run.kind)
        if self.run.first_epoch == 0 or not path.is_file():
            return []
        frame = layout.read_metrics(path)
        return frame[frame["epoch"] < self.run.first_epoch].to_dict("records")

    def writes(self, epoch, step_means, measures, machine, end_time):
        """The writes of each net's log with the row of `epoch`: `step_means` {part: (N,)}
        the loss parts' means over the epoch's training steps (none at epoch 0), `measures`
        each net's {set: {measure: value}}, `machine` the seconds of METRICS_TIMES and the threads."""
        learning_rates = {f"lr_{name}": optimiser.param_groups[0]["lr"] if epoch else math.nan
                          for name, optimiser in self.run.optimisers.items()}
        writes = []
        for net, ind_id in enumerate(self.run.ind_ids):
            row = {"epoch": epoch, **learning_rates,
                   **{f"loss_{part}": float(means[net]) for part, means in step_means.items()},
                   **{f"{split}_{name}": value for split, values in measures[net].items()
                      for name, value in values.items()},
                   **machine, layout.METRICS_END_TIME: end_time}
            row = {column: row.get(column, math.nan) for column in self.columns}
            self.rows[net].append(row)
            path = self.exp.metrics_path(ind_id, self.run.kind)
            frame = pd.DataFrame(self.rows[net], columns=self.columns)
            writes.append((path, partial(layout.write_metrics, path, frame)))
            if self.tensorboard[net] is not None:
                pictures = self.mode.pictures(self.exp, ind_id, epoch)
                writes.append((self.exp.tensorboard_dir(ind_id, self.run.kind),
                               partial(self.tensorboard[net].write, row, pictures)))
        return writes

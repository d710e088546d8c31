"""The analyses of `processResults.py` on a finished experiment (SPEC section 5).

Each analysis reads the experiment through `layout` (nets' .ini files, metrics logs, scores
CSVs, weights files), returns the numbers behind its figure, and writes its files in vis/X/.
Scores are read in a thread pool, one CSV per task, and reduced with numpy: no Python
runs per CSV row. The accuracies per epoch come from a net's metrics log when it has every
scored epoch (one small CSV instead of a scores CSV per epoch), else from its scores CSVs.
The flags of `processResults.py`, and the order in which the analyses run, come from one
table, ANALYSES: a new analysis is one entry there.
"""

import argparse
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.manifold import TSNE
from threadpoolctl import threadpool_limits

from . import plots, summary
from .checkpoint import evaluated_state, load_checkpoint
from .nets import load_clustnet, load_encoder
from .data import binary_targets, load_dataset
from .errors import ClustNetError
from .layout import Experiment, atomic_path, check_exp_id, read_metrics, read_scores, summary_paths
from .metrics import GROUP_NAMES, accuracies, class_groups, confusion_matrix, hungarian_matching
from .options import OPTIONS_BY_NAME, format_value, read_saved_options, unknown_option_message

ACCURACY_NAMES = ("binary", "pos_clust", "neg_clust")
VALIDATION = "val"  # the split held out of the training images (--val_size)
VAL_COLUMNS = [f"{VALIDATION}_{name}" for name in ACCURACY_NAMES]  # in the --acc_evol table


class Study:
    """A finished experiment as the analyses see it: its nets, their options and epochs,
    its scores, and the images of the dataset the nets were trained on (test set, or the
    train set with `train`)."""

    def __init__(self, exp_id, train=False, removed=()):
        self.exp = Experiment(exp_id)
        self.train = train
        self.removed = set(removed)
        self.set_name = "train" if train else "test"  # the analysed split
        self._options, self._datasets = {}, {}

    def all_net_ids(self):
        ids = self.exp.net_ids()
        if not ids:
            raise ClustNetError(f"no experiment {self.exp.exp_id!r}: no clustDetectNet<id>.ini in {self.exp.nets_dir}")
        return ids

    def net_ids(self):
        """The experiment's nets, less those of --nets_to_remove (which must exist)."""
        ids = self.all_net_ids()
        unknown = sorted(self.removed - set(ids))
        if unknown:
            raise ClustNetError(f"--nets_to_remove {' '.join(map(str, unknown))}: experiment "
                                f"{self.exp.exp_id!r} has nets {', '.join(map(str, ids))} only")
        kept = [i for i in ids if i not in self.removed]
        if not kept:
            raise ClustNetError("--nets_to_remove leaves no net to analyse")
        return kept

    def check_net(self, ind_id):
        ids = self.all_net_ids()
        if ind_id not in ids:
            raise ClustNetError(f"experiment {self.exp.exp_id!r} has no net {ind_id} "
                                f"(its nets: {', '.join(map(str, ids))})")

    def options(self, ind_id):
        """The options net `ind_id` was trained with, from its .ini."""
        if ind_id not in self._options:
            self.check_net(ind_id)
            self._options[ind_id] = read_saved_options(self.exp.ini_path(ind_id))
        return self._options[ind_id]

    def scores_path(self, ind_id, epoch, split=None):
        """The scores CSV of a net and epoch on `split` (default: the analysed set)."""
        return self.exp.scores_path(ind_id, epoch, split or self.set_name)

    def split_epochs(self, ind_id, split):
        """The epochs with a scores CSV on `split`, sorted; maybe none."""
        return self.exp.scored_epochs(ind_id, split)

    def scored_epochs(self, ind_id):
        """The epochs scored on the analysed set: at least one."""
        epochs = self.split_epochs(ind_id, self.set_name)
        if not epochs:
            raise ClustNetError(f"net {ind_id} of experiment {self.exp.exp_id!r} has no {self.set_name} "
                                f"scores in {self.exp.results_dir}")
        return epochs

    def weight_epochs(self, ind_id):
        self.check_net(ind_id)
        epochs = self.exp.epochs(ind_id)
        if not epochs:
            raise ClustNetError(f"net {ind_id} of experiment {self.exp.exp_id!r} has no weights files "
                                f"in {self.exp.nets_dir}")
        return epochs

    def check_epoch(self, ind_id, epoch, epochs):
        if epoch not in epochs:
            raise ClustNetError(f"net {ind_id} of experiment {self.exp.exp_id!r} has no epoch {epoch} "
                                f"(epochs {epochs[0]}..{epochs[-1]})")

    def net_labels(self, ids, option_names):
        """{net: 'net 1: lr=0.01, batch_size=4'}: the legend of each net."""
        check_option_names(option_names)
        return {i: f"net {i}: " + ", ".join(f"{name}={format_value(getattr(self.options(i), name))}"
                                           for name in option_names) for i in ids}

    def summarise_scores(self, ids, summarise, split=None):
        """{(net, epoch): summarise(scores frame, net's options)} over every scores CSV of the
        nets `ids` on `split` (default: the analysed set), the CSVs read in parallel. Every
        epoch of a net scores the same images, so a CSV with fewer rows than the others lost
        whole lines: it is reported."""
        split = split or self.set_name
        options = {i: self.options(i) for i in ids}
        jobs = [(i, epoch) for i in ids
                for epoch in (self.scored_epochs(i) if split == self.set_name else self.split_epochs(i, split))]

        def run(job):
            frame = read_scores(self.scores_path(*job, split))
            return len(frame), summarise(frame, options[job[0]])
        with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) + 2)) as pool:
            results = dict(zip(jobs, pool.map(run, jobs)))
        for ind_id in ids:
            rows = {epoch: n for (net, epoch), (n, _) in results.items() if net == ind_id}
            short = min(rows, key=rows.get)
            if rows[short] != max(rows.values()):
                raise ClustNetError(f"scores file {self.scores_path(ind_id, short, split)} is truncated: "
                                    f"{rows[short]} rows, {max(rows.values())} in other epochs")
        return {job: value for job, (_, value) in results.items()}

    def dataset(self, opts):
        """The dataset named in `opts`, loaded once, with the net's validation images held out
        (so its training set is the one the net's train scores list)."""
        key = (opts.dataset, opts.data_dir, opts.val_size)
        if key not in self._datasets:
            self._datasets[key] = load_dataset(opts.dataset, opts.data_dir, opts.val_size)
        return self._datasets[key]

    def images(self, opts):
        """(images, labels, class names) of the analysed set of the dataset in `opts`."""
        data = self.dataset(opts)
        return (data.train_x, data.train_y, data.classes) if self.train else (data.test_x, data.test_y, data.classes)


def check_option_names(names):
    for name in names:
        if name not in OPTIONS_BY_NAME:
            raise ClustNetError(unknown_option_message(name, "in the analysis options") +
                                ": name options of trainVal.py, e.g. lr, batch_size, clnblayers")


def score_arrays(frame):
    """(10-class labels, binary targets, log-probabilities (n, 2), CN distribution (n, K))."""
    clusters = [c for c in frame.columns if c.startswith("clust_")]
    return (frame.origTarg.to_numpy(), frame.targ.to_numpy(), frame[["pred_0", "pred_1"]].to_numpy(),
            frame[clusters].to_numpy())


def seen_classes(labels, opts):
    """The dataset's classes as a scores CSV shows them: those seen and the positive ones.
    A class missing from the CSV adds an empty confusion row, which changes no accuracy."""
    return range(max(int(labels.max()), *opts.pos_classes) + 1)


def epoch_accuracies(frame, opts):
    """The accuracies trainVal.py printed for this scores CSV (same function, same inputs)."""
    labels, targets, log_probs, cluster_probs = score_arrays(frame)
    return accuracies(labels, targets, log_probs, cluster_probs, opts.pos_classes, seen_classes(labels, opts))


def logged_accuracies(study, ind_id):
    """Net `ind_id`'s accuracies from its metrics log: a frame indexed by the epochs scored
    on the analysed set, columns ACCURACY_NAMES and, where the log has them, VAL_COLUMNS. None
    when the log is absent or unreadable, or lacks a row or an accuracy that the net's scores
    CSVs (of the analysed set, and of the validation split if any) have: those are read then."""
    path = study.exp.metrics_path(ind_id)
    if not path.is_file():
        return None
    try:
        log = read_metrics(path)
    except ClustNetError:  # unreadable or cut: the scores CSVs hold the same numbers
        return None
    log = log.drop_duplicates("epoch", keep="last").set_index("epoch")  # a redone epoch: its last row
    needed = {study.set_name: study.scored_epochs(ind_id), VALIDATION: study.split_epochs(ind_id, VALIDATION)}
    for split, epochs in needed.items():
        columns = [f"{split}_{name}" for name in ACCURACY_NAMES]
        if epochs and (not set(columns) <= set(log.columns) or not set(epochs) <= set(log.index)
                       or log.loc[epochs, columns].isna().any().any()):
            return None
    epochs = needed[study.set_name]
    frame = log.loc[epochs, [f"{study.set_name}_{name}" for name in ACCURACY_NAMES]]
    frame.columns = list(ACCURACY_NAMES)
    if set(VAL_COLUMNS) <= set(log.columns):
        frame[VAL_COLUMNS] = log.loc[epochs, VAL_COLUMNS]
    return frame


def accuracy_frame(results, prefix=""):
    """{(net, epoch): {accuracy name: value}} as a frame net, epoch, <prefix><accuracy name>..."""
    return pd.DataFrame([{"net": net, "epoch": epoch, **{prefix + name: value for name, value in values.items()}}
                         for (net, epoch), values in results.items()])


def accuracy_table(study, ids):
    """The accuracies of the nets `ids` at every epoch scored on the analysed set: a frame
    net, epoch, binary, pos_clust, neg_clust (fractions), and val_binary, val_pos_clust,
    val_neg_clust (the validation split's, empty where a net has none) when a net has a
    validation split. Each net's numbers come from its metrics log when that is complete
    (`logged_accuracies`), else from its scores CSVs: the same numbers, since trainVal.py logs
    the accuracies of the scores it writes."""
    logged = {i: frame for i in ids if (frame := logged_accuracies(study, i)) is not None}
    unlogged = [i for i in ids if i not in logged]
    frames = [frame.reset_index().assign(net=i) for i, frame in logged.items()]
    if unlogged:
        frame = accuracy_frame(study.summarise_scores(unlogged, epoch_accuracies))
        validation = study.summarise_scores([i for i in unlogged if study.split_epochs(i, VALIDATION)],
                                            epoch_accuracies, VALIDATION)
        if validation:
            frame = frame.merge(accuracy_frame(validation, f"{VALIDATION}_"), on=["net", "epoch"], how="left")
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True).reindex(columns=["net", "epoch", *ACCURACY_NAMES, *VAL_COLUMNS])
    if table[VAL_COLUMNS].isna().all().all():
        table = table.drop(columns=VAL_COLUMNS)
    return table.sort_values(["net", "epoch"], ignore_index=True)


def has_validation(table):
    return set(VAL_COLUMNS) <= set(table.columns)


def accuracy_evolution(study, option_names):
    """`--acc_evol`: the table net, options, epoch, binary, pos_clust, neg_clust (fractions;
    then val_binary, val_pos_clust, val_neg_clust when the nets have a validation split), its
    CSV, the curves (a panel for the validation split beside the analysed set's) and the
    total variation of each curve of the analysed set."""
    ids = study.net_ids()
    labels = study.net_labels(ids, option_names)
    table = accuracy_table(study, ids)
    for position, name in enumerate(option_names):
        table.insert(1 + position, name, [format_value(getattr(study.options(i), name)) for i in table.net])
    exp, train = study.exp, study.train
    with atomic_path(exp.accuracy_table_path(train)) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6f")
    if has_validation(table):
        panels, title = {f"{study.set_name} set": "", "validation split": f"{VALIDATION}_"}, "accuracies"
    else:
        panels, title = {"": ""}, f"{study.set_name} accuracies"
    plots.plot_accuracy_curves(table, labels, panels, exp.accuracy_plot_path(train),
                               f"{exp.exp_id}: {title} per epoch")
    variation = table.groupby("net")[list(ACCURACY_NAMES)].agg(lambda curve: np.abs(np.diff(curve)).sum())
    plots.plot_total_variation(variation, labels, exp.total_variation_path(train),
                               f"{exp.exp_id}: total variation of the {study.set_name} accuracy curves")
    return table, variation


def layer_names(state):
    """{parameter name: layer name}: a layer's weight and bias are one layer."""
    names = {}
    for key in state:
        part, *middle, index = key.split(".")
        if part == "encoder":
            layer = "encoder dense" if middle == ["dense"] else f"encoder conv {int(index) + 1}"
        elif part == "cn":
            layer = f"CN dense {int(middle[-1]) + 1}"
        else:
            layer = f"DNs dense {int(index) + 1}"
        names[key] = layer
    return names


def weight_distances(study):
    """`--weig`: per net, per layer, the Euclidean distance between the weights (and biases)
    of each epoch and those of the previous epoch. {net: frame epochs x layers}."""
    distances = {}
    for ind_id in study.net_ids():
        epochs = study.weight_epochs(ind_id)
        states = [evaluated_state(load_checkpoint(study.exp.weights_path(ind_id, epoch))) for epoch in epochs]
        names = layer_names(states[0])
        rows = []
        for before, after in zip(states, states[1:]):
            squared = pd.Series({key: float(((after[key] - before[key]) ** 2).sum()) for key in names})
            rows.append(np.sqrt(squared.groupby(names).sum()))
        frame = pd.DataFrame(rows, index=pd.Index(epochs[1:], name="epoch"))[list(dict.fromkeys(names.values()))]
        plots.plot_epoch_lines(frame, study.exp.weights_distance_path(ind_id),
                               f"{study.exp.exp_id}, net {ind_id}: weight change per epoch",
                               "distance to the previous epoch's weights (L2)", "layer", log_scale=True)
        distances[ind_id] = frame
    return distances


def batches(images, size):
    return (images[start:start + size] for start in range(0, len(images), size))


@torch.no_grad()
def zero_fractions(model, images, batch_size):
    """{layer name: fraction of the activations that are exactly 0} over `images`."""
    zeros, totals = {}, {}
    for batch in batches(images, batch_size):
        for layer, values in model.hidden_activations(batch.unsqueeze(0)).items():
            zeros[layer] = zeros.get(layer, 0) + int((values == 0).sum())
            totals[layer] = totals.get(layer, 0) + values.numel()
    return {layer: zeros[layer] / totals[layer] for layer in zeros}


def sparsity(study, option_names):
    """`--spar`: the table net, epoch, layer, zero_fraction over every net and epoch, and its plot."""
    ids = study.net_ids()
    labels = study.net_labels(ids, option_names)
    rows = []
    for ind_id in ids:
        opts = study.options(ind_id)
        images = study.images(opts)[0]
        for epoch in study.weight_epochs(ind_id):
            model = load_clustnet(study.exp.weights_path(ind_id, epoch))[0]
            rows += [{"net": ind_id, "epoch": epoch, "layer": layer, "zero_fraction": fraction}
                     for layer, fraction in zero_fractions(model, images, opts.test_batch_size).items()]
    table = pd.DataFrame(rows)
    plots.plot_sparsity(table, labels, study.exp.sparsity_path(study.train),
                        f"{study.exp.exp_id}: sparsity of the activations ({study.set_name} images)")
    return table


def failure_cases(study, ind_id, epoch):
    """`--failurecases`: every image whose binary prediction is wrong at that epoch, written as
    <index in the set>.png. Returns the indices."""
    study.check_net(ind_id)
    study.check_epoch(ind_id, epoch, study.scored_epochs(ind_id))
    frame = read_scores(study.scores_path(ind_id, epoch))
    opts = study.options(ind_id)
    data = study.dataset(opts)
    images, labels, _ = study.images(opts)
    if len(images) != len(frame) or not np.array_equal(labels.numpy(), frame.origTarg.to_numpy()):
        raise ClustNetError(f"the {study.set_name} images of {opts.dataset} do not match the scores of "
                            f"net {ind_id} ({len(images)} images, {len(frame)} scores rows)")
    wrong = np.flatnonzero(frame[["pred_0", "pred_1"]].to_numpy().argmax(axis=1) != frame.targ.to_numpy())
    folder = study.exp.failures_dir(ind_id, epoch, study.train)
    pixels = (data.unnormalise(images[wrong]) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    for index, image in zip(wrong, pixels):
        with atomic_path(folder / f"{index}.png") as tmp:
            Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image).save(tmp, format="PNG")
    return wrong


def class_dn_counts(frame, opts):
    """Per binary group, the images of each class that the CN sent to each DN (dn_0...), the
    DN matched to the class by the clustering accuracy's Hungarian matching (matched_dn; -1
    if none: more classes than DNs) and the share of the class's images it holds
    (matched_share): where a group's accuracy is lost, class by class."""
    labels, _, _, cluster_probs = score_arrays(frame)
    chosen, n_clusters = cluster_probs.argmax(axis=1), cluster_probs.shape[1]
    tables = []
    for name, classes in class_groups(opts.pos_classes, seen_classes(labels, opts)).items():
        inside = np.isin(labels, classes)
        counts = confusion_matrix(labels[inside], chosen[inside], classes, n_clusters)
        rows, columns = hungarian_matching(counts)
        matched = np.full(len(classes), -1)
        matched[rows] = columns
        held = np.where(matched >= 0, counts[np.arange(len(classes)), matched], 0)
        table = pd.DataFrame(counts, columns=[f"dn_{k}" for k in range(n_clusters)])
        table.insert(0, "class", classes)
        table.insert(0, "group", GROUP_NAMES[name])
        table["matched_dn"] = matched
        table["matched_share"] = held / np.maximum(counts.sum(axis=1), 1)
        tables.append(table)
    return pd.concat(tables, ignore_index=True)


def class_dn_table(study, ind_id, epoch):
    """`--class_dn`: class_dn_counts of net `ind_id` at `epoch`, written as a CSV."""
    study.check_net(ind_id)
    study.check_epoch(ind_id, epoch, study.scored_epochs(ind_id))
    table = class_dn_counts(read_scores(study.scores_path(ind_id, epoch)), study.options(ind_id))
    with atomic_path(study.exp.class_dn_path(ind_id, epoch, study.train)) as tmp:
        table.to_csv(tmp, index=False)
    return table


def sorted_cluster_means(frame, _opts):
    """The CN's distribution of each image sorted in decreasing order, averaged over images."""
    return -np.sort(-score_arrays(frame)[3], axis=1).mean(axis=0)


def cluster_distribution(study):
    """`--cludis`: per net, (epochs, matrix epochs x K of mean sorted CN outputs), and its plot."""
    ids = study.net_ids()
    results = study.summarise_scores(ids, sorted_cluster_means)
    distributions = {}
    for ind_id in ids:
        epochs = [epoch for net, epoch in results if net == ind_id]
        shares = np.stack([results[ind_id, epoch] for epoch in epochs])
        plots.plot_cumulated_bars(shares, epochs, study.exp.cludis_path(ind_id, study.train),
                                  f"{study.exp.exp_id}, net {ind_id}: certainty of the CN "
                                  f"({study.set_name} images)")
        distributions[ind_id] = (epochs, shares)
    return distributions


@torch.no_grad()
def expert_variances(model, images, positive, layer, batch_size):
    """(K,) per DN: the variance over the images of each unit of its layer `layer` (after the
    ReLU for a hidden layer, the 2 logits for the last), averaged over the units; images of
    the positive group and of the negative group apart. {True: ..., False: ...}."""
    outputs = []
    for batch in batches(images, batch_size):
        z = model.encoder(batch.unsqueeze(0))
        output = model.dn_layer_outputs(z)[layer - 1][0]
        outputs.append(F.relu(output) if layer < len(model.dn.weights) else output)
    outputs = torch.cat(outputs)  # (B, K, units)
    return {group: outputs[positive == group].var(dim=0, unbiased=False).mean(dim=-1).numpy()
            for group in (True, False)}


def feature_map_variance(study, ind_id, layer):
    """`--feat_map_var`: {positive group?: frame epochs x DNs} and the two plots."""
    opts = study.options(ind_id)
    if not 1 <= layer <= opts.denblayers:
        raise ClustNetError(f"--feat_map_var {ind_id} {layer}: the DNs of net {ind_id} have layers "
                            f"1..{opts.denblayers} (denblayers {opts.denblayers})")
    images, labels, _ = study.images(opts)
    positive = binary_targets(labels, opts.pos_classes).bool()
    epochs = study.weight_epochs(ind_id)
    per_epoch = [expert_variances(load_clustnet(study.exp.weights_path(ind_id, epoch))[0], images, positive,
                                  layer, opts.test_batch_size) for epoch in epochs]
    frames = {}
    for group in (True, False):
        frame = pd.DataFrame([variances[group] for variances in per_epoch], index=pd.Index(epochs, name="epoch"),
                             columns=[f"DN {k}" for k in range(opts.clust)])
        name = "positive" if group else "negative"
        plots.plot_epoch_lines(frame, study.exp.feature_variance_path(ind_id, layer, group, study.train),
                               f"{study.exp.exp_id}, net {ind_id}: variance of the DNs' layer {layer} "
                               f"on {name} {study.set_name} images",
                               "mean variance of the units over the images", "detecting network")
        frames[group] = frame
    return frames


def tsne_points(values, seed=0):
    """2-D t-SNE of the rows of `values`. On one OpenMP thread: with PyTorch's OpenMP runtime
    loaded beside scikit-learn's, their threads spin against each other and the t-SNE of
    30 points took 40 s instead of 0.1 s (1000 points: 5 s)."""
    perplexity = min(30.0, (len(values) - 1) / 3)
    with threadpool_limits(1, user_api="openmp"):
        return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(values)


@torch.no_grad()
def tsne(study, weights, n_images):
    """`--tsne`: t-SNE of the encoder's representations of `n_images` images drawn at random
    (seed 0) from the set, and of their raw pixels. Returns (indices, points, raw points)."""
    encoder, opts = load_encoder(weights)
    images, labels, classes = study.images(opts)
    if not 5 <= n_images <= len(images):
        raise ClustNetError(f"--tsne N: N must be between 5 and the {len(images)} {study.set_name} images")
    indices = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:n_images]
    sample, sample_labels = images[indices], labels[indices].numpy()
    representations = torch.cat([encoder(batch.unsqueeze(0))[0] for batch in batches(sample, opts.test_batch_size)])
    points = tsne_points(representations.numpy())
    raw_points = tsne_points(sample.flatten(1).numpy())
    name = os.path.basename(weights)
    encoded_path, raw_path = study.exp.tsne_paths(name)
    plots.plot_embedding(points, sample_labels, classes, encoded_path,
                         f"t-SNE of the encoder's representations ({name}, {n_images} {study.set_name} images)")
    plots.plot_embedding(raw_points, sample_labels, classes, raw_path,
                         f"t-SNE of the raw pixels ({n_images} {study.set_name} images)")
    return indices.numpy(), points, raw_points


def summary_target(spec):
    """`--summary`'s EXP or EXP@EPOCH: (experiment name, epoch or None)."""
    exp_id, at, epoch = spec.partition("@")
    if at and not epoch.isdigit():
        raise ClustNetError(f"--summary {spec}: EXP@EPOCH needs an epoch number after the @")
    return exp_id, int(epoch) if at else None


def read_baselines(path):
    """experiments/baselines.py's table, checked."""
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise ClustNetError(f"baselines file {path} is unreadable: {error}") from None
    if not {"method", *ACCURACY_NAMES} <= set(frame.columns):
        raise ClustNetError(f"baselines file {path} has no columns method, {', '.join(ACCURACY_NAMES)}")
    return frame


def pooled_nets(spec, exp_ids):
    """The accuracy table and {net: options} of the nets of several experiments, as if they
    were one experiment's (`--summary A,B`: more seeds of one setting trained as another
    experiment); each net named EXP:ID."""
    tables, options = [], {}
    for exp_id in exp_ids:
        study = Study(exp_id)
        ids = study.exp.net_ids()
        if not ids:
            raise ClustNetError(f"--summary {spec}: experiment {exp_id!r} has no nets to pool "
                                f"(no clustDetectNet<id>.ini in {study.exp.nets_dir})")
        tables.append(accuracy_table(study, ids).assign(net=lambda table: exp_id + ":" + table.net.astype(str)))
        options.update({f"{exp_id}:{i}": study.options(i) for i in ids})
    return pd.concat(tables, ignore_index=True), options


def summarise_experiments(specs):
    """`--summary`: the summary table (summary.summary_table) of the experiments `specs`
    (EXP, or EXP@EPOCH to compare the nets at that epoch; A,B[@EPOCH] pools the nets of A
    and B, pooled_nets), every net of each, from the accuracy tables of --acc_evol; an
    experiment with vis/EXP/baselines.csv adds its rows."""
    rows = []
    for spec in specs:
        exp_id, epoch = summary_target(spec)
        if "," in exp_id:
            rows += summary.experiment_rows(exp_id, *pooled_nets(spec, exp_id.split(",")), epoch)
            continue
        study = Study(exp_id)
        ids, baselines = study.exp.net_ids(), study.exp.baselines_path()
        if not ids and not baselines.is_file():
            raise ClustNetError(f"no experiment {exp_id!r}: no clustDetectNet<id>.ini in {study.exp.nets_dir} "
                                f"and no {baselines}")
        if not ids and epoch is not None:
            raise ClustNetError(f"--summary {spec}: experiment {exp_id!r} has baselines only, no epochs")
        if ids:
            rows += summary.experiment_rows(exp_id, accuracy_table(study, ids), {i: study.options(i) for i in ids},
                                            epoch)
        if baselines.is_file():
            rows += summary.baseline_rows(exp_id, read_baselines(baselines))
    return summary.summary_table(rows)


def summary_name(name):
    """--summary_name: a plain file name."""
    try:
        return check_exp_id(name)
    except ClustNetError:
        raise argparse.ArgumentTypeError(f"{name!r} is not a plain file name (use letters, digits, '.', '_', "
                                         "'-', '+', '=')") from None


class AnalysisParser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one ClustNetError line."""

    def error(self, message):
        raise ClustNetError(message)


def check_tsne(value):
    if not value[1].isdigit():
        raise ClustNetError(f"--tsne {value[0]} {value[1]}: N must be a number of images")


def check_summary(specs):
    for spec in specs:
        for exp_id in summary_target(spec)[0].split(","):
            check_exp_id(exp_id)


@dataclass(frozen=True)
class Analysis:
    """One analysis of processResults.py: its flag, the argparse keywords of that flag, and
    run(study, value), which does the analysis of --exp_id's experiment (the Study) with the
    flag's value and returns what it wrote (each printed as a `wrote ...` line). An analysis
    that names its experiments in its value (`of_exp_id` False) runs as run(args, value),
    args the whole command line. `check(value)`, if any, vets the value before any
    experiment is read."""
    flag: str
    spec: dict
    run: Callable
    check: Callable | None = None
    of_exp_id: bool = True


def run_acc_evol(study, option_names):
    accuracy_evolution(study, option_names)
    exp, train = study.exp, study.train
    return [exp.accuracy_table_path(train), exp.accuracy_plot_path(train), exp.total_variation_path(train)]


def run_weig(study, _value):
    return [study.exp.weights_distance_path(i) for i in weight_distances(study)]


def run_spar(study, option_names):
    sparsity(study, option_names)
    return [study.exp.sparsity_path(study.train)]


def run_failurecases(study, net_epoch):
    wrong = failure_cases(study, *net_epoch)
    return [f"{len(wrong)} misclassified images in {study.exp.failures_dir(*net_epoch, study.train)}"]


def run_class_dn(study, net_epoch):
    class_dn_table(study, *net_epoch)
    return [study.exp.class_dn_path(*net_epoch, study.train)]


def run_cludis(study, _value):
    return [study.exp.cludis_path(i, study.train) for i in cluster_distribution(study)]


def run_feat_map_var(study, net_layer):
    feature_map_variance(study, *net_layer)
    return [study.exp.feature_variance_path(*net_layer, group, study.train) for group in (True, False)]


def run_tsne(study, weights_n):
    tsne(study, weights_n[0], int(weights_n[1]))
    return list(study.exp.tsne_paths(os.path.basename(weights_n[0])))


def run_summary(args, specs):
    """Print the summary table as Markdown and write it as CSV and Markdown."""
    table = summarise_experiments(specs)
    text = summary.markdown(table)
    print(text, flush=True)
    paths = summary_paths(args.summary_name)
    summary.write_summary(table, text, *paths)
    return list(paths)


# Every analysis, in the order they run when several are asked for (and --help lists them).
# A new analysis is one entry here.
ANALYSES = (
    Analysis("acc_evol", dict(nargs="+", metavar="OPTION",
                              help="accuracies per epoch of every net (and on its validation split, if any), "
                                   "legend from these options' values"),
             run_acc_evol),
    Analysis("weig", dict(action="store_true", help="per layer, weight change from epoch to epoch"), run_weig),
    Analysis("spar", dict(nargs="+", metavar="OPTION",
                          help="fraction of zero activations per layer and epoch, legend from these options"),
             run_spar),
    Analysis("failurecases", dict(nargs=2, type=int, metavar=("NET", "EPOCH"),
                                  help="write the images misclassified by net NET at epoch EPOCH"),
             run_failurecases),
    Analysis("class_dn", dict(nargs=2, type=int, metavar=("NET", "EPOCH"),
                              help="per binary group, the images of each class sent to each DN by net NET at "
                                   "epoch EPOCH, and the DN matched to each class"),
             run_class_dn),
    Analysis("cludis", dict(action="store_true", help="mean sorted CN output per epoch, every net"), run_cludis),
    Analysis("feat_map_var", dict(nargs=2, type=int, metavar=("NET", "LAYER"),
                                  help="variance of each DN's activations at layer LAYER across epochs"),
             run_feat_map_var),
    Analysis("tsne", dict(nargs=2, metavar=("WEIGHTS", "N"),
                          help="t-SNE of N images' encoder representations (CAE or ClustNet file) and pixels"),
             run_tsne, check_tsne),
    Analysis("summary", dict(nargs="+", metavar="EXP",
                             help="one table over these experiments (EXP@EPOCH: at that epoch; A,B: the nets "
                                  "of A and B pooled as one experiment's), no --exp_id: "
                                  "per experiment and setting, mean +- std over the nets of the test accuracies "
                                  "at the last epoch and at each net's best validation epoch"),
             run_summary, check_summary, of_exp_id=False),
)


def build_parser():
    parser = AnalysisParser(description="Analyses of a finished ClustNet experiment; files go to vis/<exp_id>/ "
                                        "(--summary: vis/summary/).", allow_abbrev=False)
    parser.add_argument("--exp_id", help="the experiment to analyse (every analysis but --summary)")
    parser.add_argument("--train", action="store_true", help="use the train set's scores and images")
    for analysis in ANALYSES:
        parser.add_argument(f"--{analysis.flag}", **analysis.spec)
        if analysis.flag == "acc_evol":  # where --help has always listed it
            parser.add_argument("--nets_to_remove", nargs="+", type=int, default=[], metavar="ID",
                                help="leave these nets out of the analyses of every net")
        if analysis.flag == "summary":
            parser.add_argument("--summary_name", type=summary_name, default="summary", metavar="NAME",
                                help="--summary writes vis/summary/NAME.csv and NAME.md (default: summary)")
    return parser


def main(argv):
    """Run the requested analyses one after another, in ANALYSES's order, printing the files
    each wrote."""
    args = build_parser().parse_args(argv)
    asked = [(analysis, getattr(args, analysis.flag)) for analysis in ANALYSES if getattr(args, analysis.flag)]
    if not asked:
        raise ClustNetError("nothing to do: give one or more of "
                            + ", ".join(f"--{analysis.flag}" for analysis in ANALYSES))
    for analysis, value in asked:
        if analysis.check:
            analysis.check(value)
    of_exp_id = [analysis.flag for analysis, _ in asked if analysis.of_exp_id]
    if of_exp_id and args.exp_id is None:
        raise ClustNetError(f"--{of_exp_id[0]} analyses one experiment: give it with --exp_id")
    if not of_exp_id and (args.exp_id is not None or args.train or args.nets_to_remove):
        raise ClustNetError("--exp_id, --train and --nets_to_remove are for the analyses of one experiment; "
                            "--summary EXP [EXP ...] names its experiments and reads every net's test and "
                            "validation scores")
    study = Study(args.exp_id, args.train, args.nets_to_remove) if of_exp_id else None
    for analysis, value in asked:
        for written in analysis.run(study if analysis.of_exp_id else args, value):
            print(f"wrote {written}", flush=True)

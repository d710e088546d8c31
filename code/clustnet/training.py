"""Training ClustNet: one or several seeds at once, an epoch at a time, every artifact saved.

The hot loop indexes tensors already in memory, keeps every per-step quantity on the
device (no `.item()`, no host sync) and reads them back once per epoch.
"""

import argparse
import time
from dataclasses import dataclass
from functools import partial
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from . import layout
from .checkpoint import weights_bytes, write_bytes
from .nets import build_nets
from .resume import restore
from .data import ImageData, binary_targets, load_dataset, resolve_data_dir
from .errors import ClustNetError
from .augment import random_view, view_uniforms
from .layout import CLUSTNET, Experiment
from .losses import clustnet_loss, needs_second_view, nll, scheduled_value, separated_cn_loss
from .metrics import accuracies, confusion_matrix
from .model import needs_noise
from .options import options_ini
from .plots import plot_confusion
from .speed import fast_cpu_kernels
from .writer import EpochWriter


@dataclass
class Scores:
    """What the nets output on a set of images, in the set's order, on the CPU."""
    log_probs: torch.Tensor  # (N, n, 2)
    cluster_probs: torch.Tensor  # (N, n, K)
    loss: torch.Tensor  # (N,) mean loss


def select_device(opts):
    if opts.num_threads:
        torch.set_num_threads(opts.num_threads)
    return torch.device("cuda" if torch.cuda.is_available() and not opts.no_cuda else "cpu")


def lr_at(schedule, epoch, n_epochs):
    """A schedule of m values splits the epochs into m equal consecutive parts."""
    return schedule[min(len(schedule) - 1, (epoch - 1) * len(schedule) // n_epochs)]


def make_optimiser(params, opts):
    """Fused: one kernel per parameter, half the per-step cost of foreach at batch size 4."""
    if opts.optim == "SGD":
        return torch.optim.SGD(params, lr=opts.lr[0], momentum=opts.momentum,
                               weight_decay=opts.weight_decay, fused=True)
    return torch.optim.Adam(params, lr=opts.lr[0], weight_decay=opts.weight_decay,
                            amsgrad=opts.optim == "AMSGrad", fused=True)


def make_optimisers(model, opts):
    """Two optimisers, so that the CN has its own learning rate and can step alone."""
    return {"cn": make_optimiser(model.cn_parameters(), opts),
            "main": make_optimiser(model.encoder_dn_parameters(), opts)}


def set_learning_rates(optimisers, opts, epoch):
    schedules = {"cn": opts.lr_cl or opts.lr, "main": opts.lr}
    for name, optimiser in optimisers.items():
        for group in optimiser.param_groups:
            group["lr"] = lr_at(schedules[name], epoch, opts.epochs)


def in_set_order(values, order):
    """Outputs (N, n, ...) collected in each net's shuffled `order` (N, n), back in the set's order."""
    rows = torch.arange(len(order), device=order.device).unsqueeze(1)
    return values[rows, torch.argsort(order, dim=1)]


def uniform_noise(generators, n_images, n_uniforms, device):
    """(N, n, u) uniforms, each net's drawn from its own generator (gate samples, views)."""
    return torch.stack([torch.rand(n_images, n_uniforms, generator=g) for g in generators]).to(device)


def shuffled_order(generators, n_images, device):
    """(N, n) each net's own random order of the training images."""
    return torch.stack([torch.randperm(n_images, generator=g) for g in generators]).to(device)


def optimiser_phases(optimisers, opts):
    """The optimisers that step in each turn: all of them at every step, or with
    --batch_period p > 0 the CN's and the others' in turns of p batches."""
    if opts.batch_period and "cn" in optimisers:
        return [[optimisers["cn"]], [optimisers["main"]]]
    return [list(optimisers.values())]


def draw_views(generators, n_images, opts, device):
    """(N, n, 2u) the uniforms of two random views of each training image (augment.py), each
    net's from its own generator; None without augmentation."""
    n_uniforms = view_uniforms(opts)
    return uniform_noise(generators, n_images, 2 * n_uniforms, device) if n_uniforms else None


def train_pass(model, optimisers, images, order, views, opts, epoch, step_loss):
    """One pass over the training `images` in each net's `order` (N, n): the loop of every mode.

    `step_loss(view, index, batch, phase)` gives each net's loss (N,) on the images `index`
    (N, B) (positions `batch` of the order) and the outputs to keep, a tuple of (N, B, ...)
    tensors; `view(k)` is the batch in its random view k (0 or 1) drawn from `views`
    (draw_views; the images themselves when None), the one place where a batch is
    transformed; `phase` says whose turn it is (optimiser_phases). Returns the kept outputs
    in the set's order and each net's mean loss, on the CPU."""
    model.train()
    n_uniforms = view_uniforms(opts)
    n_nets, n_images = order.shape
    phases = optimiser_phases(optimisers, opts)
    n_steps = -(-n_images // opts.batch_size)
    step_losses = torch.zeros(n_nets, n_steps, device=order.device)
    kept = None
    steps = tqdm(range(n_steps), desc=f"epoch {epoch}", unit="batch", leave=False,
                 disable=not opts.progress, mininterval=1.0)
    with fast_cpu_kernels(order.device, n_nets, opts.batch_size):
        for step in steps:
            batch = slice(step * opts.batch_size, (step + 1) * opts.batch_size)
            phase = (step // max(opts.batch_period, 1)) % len(phases)
            index = order[:, batch]
            batch_images = images[index]

            def view(k):
                if views is None:
                    return batch_images
                return random_view(batch_images, views[:, batch, k * n_uniforms:(k + 1) * n_uniforms], opts)
            losses, outputs = step_loss(view, index, batch, phase)
            model.zero_grad(set_to_none=True)
            losses.sum().backward()
            for optimiser in phases[phase]:
                optimiser.step()
            step_losses[:, step] = losses.detach()
            if kept is None:
                kept = [torch.empty(n_nets, n_images, *output.shape[2:], dtype=output.dtype, device=output.device)
                        for output in outputs]
            for store, output in zip(kept, outputs):
                store[:, batch] = output.detach()
    check_finite(step_losses, epoch)
    return [in_set_order(store, order).cpu() for store in kept], step_losses.mean(dim=1).cpu()


def train_epoch(model, optimisers, images, targets, generators, opts, epoch):
    """ClustNet's pass over the training images: the gate's samples, the augmented views and
    the separated mode's targets drawn from each net's generator, then train_pass."""
    n_images, device = len(images), images.device
    order = shuffled_order(generators, n_images, device)
    noise = uniform_noise(generators, n_images, opts.clust, device)
    views = draw_views(generators, n_images, opts, device)
    separated = opts.clu_train_mode == "separated"
    cn_target_noise = uniform_noise(generators, n_images, 2, device) if separated else None
    smallest_share = scheduled_value(opts.rand_prop_val_sched, opts.rand_prop_epo_sched, epoch)
    second_view = views is not None and needs_second_view(opts)

    def step_loss(view, index, batch, phase):
        batch_targets = targets[index]
        out = model.outputs(view(0), noise[:, batch])
        if separated and phase == 0:  # the CN's turn: its hard-EM target
            losses = separated_cn_loss(out, batch_targets, cn_target_noise[:, batch], smallest_share)
        else:
            second_probs = out.probs  # without augmentation the second view is the first
            if second_view:
                second_probs = model.cluster_probs(view(1))
            losses = clustnet_loss(out, second_probs, batch_targets, opts)
        return losses, (out.log_probs, out.probs)

    (log_probs, cluster_probs), losses = train_pass(model, optimisers, images, order, views, opts, epoch, step_loss)
    return Scores(log_probs, cluster_probs, losses)


def check_finite(step_losses, epoch):
    """Stop on a NaN or infinite loss, naming where it first appeared."""
    bad = ~torch.isfinite(step_losses)
    if bad.any():
        net, step = (int(i) for i in bad.nonzero()[0])
        raise ClustNetError(f"the loss became {step_losses[net, step].item()} at epoch {epoch}, "
                            f"step {step + 1} (net {net + 1} of this run); the files of epoch "
                            f"{epoch - 1} are the last good ones: lower --lr or change the options")


@torch.no_grad()
def eval_chunks(model, images, opts, chunk_output):
    """`chunk_output(x)`, a tuple of (N, b, ...) tensors, on the images in chunks of
    --test_batch_size, every net on the same images (x is (N, b, C, H, W)), in eval mode;
    the outputs concatenated over the chunks."""
    model.eval()
    chunks = [chunk_output(images[start:start + opts.test_batch_size].unsqueeze(0).expand(model.n_nets, -1, -1, -1, -1))
              for start in range(0, len(images), opts.test_batch_size)]
    return [torch.cat(parts, dim=1) for parts in zip(*chunks)]


def evaluate(model, images, targets, generators, opts):
    """The nets' outputs on `images` (the same images for every net), in eval mode."""
    def chunk_output(x):
        noise = None
        if needs_noise(model.config.decision_clu, False):
            noise = uniform_noise(generators, x.shape[1], opts.clust, x.device)
        return model(x, noise)
    log_probs, cluster_probs = eval_chunks(model, images, opts, chunk_output)
    losses = nll(log_probs, targets.expand(model.n_nets, -1))
    return Scores(log_probs.cpu(), cluster_probs.cpu(), losses.cpu())


def epoch_writes(exp, run, scores, labels, train, epoch):
    """Each net's accuracies on a set (train or test), and the writes of its files: the scores
    CSV of every net and, for the test set, the two confusion-matrix PNGs, as (path, write)
    pairs for the writer (`scores` and `labels` on the CPU, not changed afterwards)."""
    opts, data = run.opts, run.data
    bin_targets = binary_targets(labels, opts.pos_classes).numpy()
    labels = labels.numpy()
    all_classes = list(range(len(data.classes)))
    groups = {True: sorted(opts.pos_classes), False: sorted(set(all_classes) - set(opts.pos_classes))}
    results, writes = [], []
    for net, ind_id in enumerate(run.ind_ids):
        log_probs, cluster_probs = scores.log_probs[net].numpy(), scores.cluster_probs[net].numpy()
        path = exp.scores_path(ind_id, epoch, train)
        writes.append((path, partial(layout.write_scores, path, labels, bin_targets, log_probs, cluster_probs)))
        results.append(accuracies(labels, bin_targets, log_probs, cluster_probs, opts.pos_classes, all_classes))
        if not train:
            for positive, classes in groups.items():
                path = exp.confusion_path(ind_id, epoch, positive)
                title = f"net {ind_id}, epoch {epoch}: {'positive' if positive else 'negative'} classes"
                writes.append((path, partial(write_confusion, path, labels, cluster_probs, classes,
                                             [data.classes[c] for c in classes], opts.clust, title)))
    return results, writes


def write_confusion(path, labels, cluster_probs, classes, class_names, n_clusters, title):
    """The confusion-matrix PNG of `classes` against the DNs the CN chose."""
    inside = np.isin(labels, classes)
    confusion = confusion_matrix(labels[inside], cluster_probs[inside].argmax(axis=1), classes, n_clusters)
    plot_confusion(confusion, class_names, path, title)


def write_epoch(exp, run, scores, labels, train, epoch):
    """epoch_writes's files, written now. Returns each net's accuracies."""
    results, writes = epoch_writes(exp, run, scores, labels, train, epoch)
    for _, write in writes:
        write()
    return results


def weights_writes(exp, run, epoch):
    """The writes of every net's weights file after `epoch`, the weights serialised now."""
    writes = []
    for net, ind_id in enumerate(run.ind_ids):
        path = exp.weights_path(ind_id, epoch, run.kind)
        content = weights_bytes(run.kind, run.model, run.optimisers, run.generators, net,
                                epoch, run.ini_texts[net])
        writes.append((path, partial(write_bytes, path, content)))
    return writes


def describe(name, loss, result):
    return (f"{name} loss {loss:.4f} binary {100 * result['binary']:.2f}% "
            f"pos {100 * result['pos_clust']:.2f}% neg {100 * result['neg_clust']:.2f}%")


@dataclass
class TrainingRun:
    opts: object
    data: ImageData
    ind_ids: list
    seeds: list
    ini_texts: list
    kind: str  # layout.CLUSTNET, DETECTNET or CAE
    model: torch.nn.Module  # the nets, initialised (or restored) and on the device
    optimisers: dict
    generators: list  # each net's own random numbers
    first_epoch: int  # 0, or the epoch after a resumed file's


def check_against_data(opts, data, kind=CLUSTNET):
    """The options that only make sense once the classes are known."""
    if kind == layout.CAE:  # no binary task, no experts
        return
    n_classes = len(data.classes)
    missing = [c for c in opts.pos_classes if c >= n_classes]
    if missing:
        raise ClustNetError(f"--pos_classes {' '.join(map(str, missing))}: the dataset has classes "
                            f"0..{n_classes - 1} only")
    n_pos = len(set(opts.pos_classes))
    smallest = min(n_pos, n_classes - n_pos)
    if smallest == 0:
        raise ClustNetError("--pos_classes must leave at least one class in each group")
    if kind == CLUSTNET and opts.clust > smallest:
        raise ClustNetError(f"--clust {opts.clust} is larger than the number of classes in a group "
                            f"({n_pos} positive, {n_classes - n_pos} negative)")


def net_ini(opts, seed, ind_id):
    """The .ini of one net of the run: as if it had been run alone with that seed."""
    return options_ini(argparse.Namespace(**dict(vars(opts), seed=seed, seeds=[], ind_id=ind_id)))


def prepare(opts, kind=CLUSTNET, resume=None):
    """Check the options, load the data, build the nets, initialise them from the --init*
    files or restore a resumed one (`resume`, a checkpoint.Resume), and claim the nets' ids:
    nothing is written before every check has passed."""
    device = select_device(opts)
    opts.data_dir = str(resolve_data_dir(opts.data_dir))
    exp = Experiment(opts.exp_id)
    data = load_dataset(opts.dataset, opts.data_dir)
    check_against_data(opts, data, kind)
    seeds = opts.seeds or [opts.seed]
    generators = [torch.Generator().manual_seed(seed) for seed in seeds]
    model = build_nets(kind, data.image_shape, opts, generators, initialise_from_files=resume is None).to(device)
    optimisers = make_optimisers(model, opts) if kind == CLUSTNET else {"main": make_optimiser(model.parameters(), opts)}
    if resume is not None:
        ind_ids, ini_texts = [opts.ind_id], [restore(resume, exp, model, optimisers, generators)]
    else:
        ind_ids, ini_texts = [], []
        for seed in seeds:
            requested = None if opts.ind_id is None else opts.ind_id + len(ind_ids)
            ind_id = exp.claim_ind_id(lambda i: net_ini(opts, seed, i), requested, opts.overwrite, kind)
            ind_ids.append(ind_id)
            ini_texts.append(net_ini(opts, seed, ind_id))
    first_epoch = 0 if resume is None else resume.epoch + 1
    run = TrainingRun(opts, data.to(device), ind_ids, seeds, ini_texts, kind, model, optimisers, generators,
                      first_epoch)
    return exp, run, device


@dataclass(frozen=True)
class Mode:
    """What one kind of net does in an epoch, for the epoch loop of `train`."""
    name: str  # in the first printed line
    scores: Callable  # (run, epoch) -> its outputs: a training pass (epoch 0: an evaluation) and the test set's
    report: Callable  # (exp, run, scores, epoch) -> (the writes of the epoch's files, a printed line per net)


def clustnet_scores(run, epoch):
    data, opts = run.data, run.opts
    train_targets = binary_targets(data.train_y, opts.pos_classes)
    if epoch == 0:  # the initial nets, evaluated on both sets
        train_scores = evaluate(run.model, data.train_x, train_targets, run.generators, opts)
    else:
        train_scores = train_epoch(run.model, run.optimisers, data.train_x, train_targets, run.generators, opts, epoch)
    test_targets = binary_targets(data.test_y, opts.pos_classes)
    return train_scores, evaluate(run.model, data.test_x, test_targets, run.generators, opts)


def clustnet_report(exp, run, scores, epoch):
    train_scores, test_scores = scores
    train_results, train_writes = epoch_writes(exp, run, train_scores, run.data.train_y.cpu(), True, epoch)
    test_results, test_writes = epoch_writes(exp, run, test_scores, run.data.test_y.cpu(), False, epoch)
    lines = [f"net {ind_id} epoch {epoch}: {describe('train', train_scores.loss[net], train_results[net])} | "
             f"{describe('test', test_scores.loss[net], test_results[net])}" for net, ind_id in enumerate(run.ind_ids)]
    return train_writes + test_writes, lines


CLUSTNET_MODE = Mode("nets", clustnet_scores, clustnet_report)


def train(opts, kind, mode, resume=None):
    """Train the nets of `opts` (a `kind` of net, trained as `mode` says) for opts.epochs
    epochs, from the epoch after `resume`'s when continuing a net. Each epoch's files are
    written by a background thread while the next epoch trains, the weights last (writer.py)."""
    exp, run, device = prepare(opts, kind, resume)
    print(f"experiment {exp.exp_id}: {mode.name} {', '.join(map(str, run.ind_ids))} on {opts.dataset} "
          f"({len(run.data.train_x)} train, {len(run.data.test_x)} test images), device {device}"
          + (f", resumed from {resume.path}" if resume else ""), flush=True)
    with EpochWriter(exp, run.ind_ids, kind, opts.epochs) as writer:
        for epoch in range(run.first_epoch, opts.epochs + 1):
            start = time.perf_counter()
            if epoch:
                set_learning_rates(run.optimisers, opts, epoch)
            scores = mode.scores(run, epoch)
            seconds = time.perf_counter() - start
            # What writing costs the training thread: the accuracies, the weights' snapshot,
            # and waiting for the previous epoch's files when the writer lags behind.
            writes, lines = mode.report(exp, run, scores, epoch)
            writer.submit(writes + weights_writes(exp, run, epoch))
            written = time.perf_counter() - start - seconds
            print("\n".join(f"{line} | {seconds:.1f} s + {written:.1f} s writing" for line in lines), flush=True)

"""Training the other modes with ClustNet's files and guarantees: the one-expert baseline
(`--pretrain True`, detectNet<id>* files) and the convolutional autoencoder
(`--pretrain_cae True`, cae<id>* files and a reconstructions PNG per epoch).
"""

from functools import partial

import matplotlib.pyplot as plt
import numpy as np
import torch
from tqdm import tqdm

from . import layout
from .data import binary_targets
from .layout import CAE, DETECTNET
from .losses import nll
from .plots import save_figure
from .speed import fast_cpu_kernels
from .training import check_finite, in_set_order, prepare, set_learning_rates, weights_writes
from .writer import EpochWriter

N_SHOWN = 8  # test images shown beside their reconstructions


def train_pass(run, epoch, batch_loss):
    """One pass over the training images in each net's own random order.

    `batch_loss(index)` gives each net's loss (N,) on images[index] (N, B) and an output to
    keep (N, B, ...) or None. Returns the kept outputs in the set's order (or None) and each
    net's mean loss."""
    model, opts, (optimiser,) = run.model, run.opts, run.optimisers.values()
    model.train()
    n_images, device = len(run.data.train_x), run.data.train_x.device
    order = torch.stack([torch.randperm(n_images, generator=g) for g in run.generators]).to(device)
    n_steps = -(-n_images // opts.batch_size)
    step_losses = torch.zeros(model.n_nets, n_steps, device=device)
    outputs = []
    steps = tqdm(range(n_steps), desc=f"epoch {epoch}", unit="batch", leave=False,
                 disable=not opts.progress, mininterval=1.0)
    with fast_cpu_kernels(device, model.n_nets, opts.batch_size):
        for step in steps:
            losses, output = batch_loss(order[:, step * opts.batch_size:(step + 1) * opts.batch_size])
            optimiser.zero_grad(set_to_none=True)
            losses.sum().backward()
            optimiser.step()
            step_losses[:, step] = losses.detach()
            if output is not None:
                outputs.append(output.detach())
    check_finite(step_losses, epoch)
    if not outputs:
        return None, step_losses.mean(dim=1).cpu()
    return in_set_order(torch.cat(outputs, dim=1), order).cpu(), step_losses.mean(dim=1).cpu()


@torch.no_grad()
def eval_chunks(run, images, chunk_output):
    """`chunk_output(x)` on the images in chunks of --test_batch_size, every net on the same
    images (x is (N, b, C, H, W)), in eval mode; the list of the chunks' outputs."""
    run.model.eval()
    size = run.opts.test_batch_size
    return [chunk_output(images[start:start + size].unsqueeze(0).expand(run.model.n_nets, -1, -1, -1, -1))
            for start in range(0, len(images), size)]


def detectnet_epoch(exp, run, epoch, writes):
    """Train the one-expert baseline an epoch (epoch 0: only evaluate); add the writes of both
    scores CSVs (no clust columns) to `writes`; a line per net."""
    data, model, opts = run.data, run.model, run.opts
    train_targets = binary_targets(data.train_y, opts.pos_classes)
    if epoch == 0:
        train_log_probs = torch.cat(eval_chunks(run, data.train_x, model), dim=1).cpu()
        train_loss = nll(train_log_probs, train_targets.cpu().expand(model.n_nets, -1))
    else:
        def batch_loss(index):
            log_probs = model(data.train_x[index])
            return nll(log_probs, train_targets[index]), log_probs
        train_log_probs, train_loss = train_pass(run, epoch, batch_loss)
    test_targets = binary_targets(data.test_y, opts.pos_classes).cpu()
    test_log_probs = torch.cat(eval_chunks(run, data.test_x, model), dim=1).cpu()
    test_loss = nll(test_log_probs, test_targets.expand(model.n_nets, -1))
    lines = []
    for net, ind_id in enumerate(run.ind_ids):
        accuracy = {}
        for train, labels, log_probs in ((True, data.train_y.cpu(), train_log_probs[net]),
                                         (False, data.test_y.cpu(), test_log_probs[net])):
            targets = binary_targets(labels, opts.pos_classes).numpy()
            path = exp.scores_path(ind_id, epoch, train, DETECTNET)
            writes.append((path, partial(layout.write_scores, path, labels.numpy(), targets, log_probs.numpy(),
                                         None)))
            accuracy[train] = 100 * float(np.mean(log_probs.numpy().argmax(axis=1) == targets))
        lines.append(f"detectNet {ind_id} epoch {epoch}: train loss {train_loss[net]:.4f} binary "
                     f"{accuracy[True]:.2f}% | test loss {test_loss[net]:.4f} binary {accuracy[False]:.2f}%")
    return lines


def squared_error(reconstructions, images):
    """(N, B, C, H, W) -> (N, B) mean squared error per pixel of each image."""
    return (reconstructions - images).pow(2).flatten(2).mean(dim=2)


def reconstruction_error(run, images):
    """(N,) each net's mean squared error per pixel over `images`, in eval mode."""
    errors = eval_chunks(run, images, lambda x: squared_error(run.model(x), x).sum(dim=1))
    return (sum(errors) / len(images)).cpu()


def cae_epoch(exp, run, epoch, writes):
    """Train the autoencoder an epoch (epoch 0: only evaluate); add the writes of the drawings
    of a few test images' reconstructions to `writes`; a line per net with the reconstruction
    error per pixel."""
    data, model = run.data, run.model
    if epoch == 0:
        train_error = reconstruction_error(run, data.train_x)
    else:
        def batch_loss(index):
            images = data.train_x[index]
            return squared_error(model(images), images).mean(dim=1), None
        _, train_error = train_pass(run, epoch, batch_loss)
    test_error = reconstruction_error(run, data.test_x)
    shown = data.test_x[:N_SHOWN]
    reconstructions = eval_chunks(run, shown, model)[0]
    lines = []
    for net, ind_id in enumerate(run.ind_ids):
        path = exp.reconstructions_path(ind_id, epoch)
        writes.append((path, partial(plot_reconstructions, data.unnormalise(shown),
                                     data.unnormalise(reconstructions[net]), path,
                                     f"autoencoder {ind_id}, epoch {epoch}")))
        lines.append(f"cae {ind_id} epoch {epoch}: reconstruction error per pixel (MSE, normalised images) "
                     f"train {train_error[net]:.5f} | test {test_error[net]:.5f}")
    return lines


def plot_reconstructions(images, reconstructions, path, title):
    """Test images (top row) above their reconstructions (bottom row), pixels in [0, 1]."""
    figure, axes = plt.subplots(2, len(images), figsize=(1.2 * len(images), 2.8), squeeze=False)
    for column, pair in enumerate(zip(images, reconstructions)):
        for row, image in enumerate(pair):
            picture = image.permute(1, 2, 0).numpy()
            axes[row, column].imshow(picture[..., 0] if picture.shape[2] == 1 else picture,
                                     cmap="gray", vmin=0, vmax=1)
            axes[row, column].axis("off")
    axes[0, 0].set_title("images", loc="left", fontsize=8)
    axes[1, 0].set_title("reconstructions", loc="left", fontsize=8)
    figure.suptitle(title)
    save_figure(figure, path)


EPOCHS = {DETECTNET: detectnet_epoch, CAE: cae_epoch}


def train_pretraining(opts, kind, resume=None):
    """Train the one-expert baseline (kind DETECTNET) or the autoencoder (kind CAE) for
    opts.epochs epochs, each epoch's files written in the background while the next trains,
    the weights last (writer.py)."""
    exp, run, device = prepare(opts, kind, resume)
    print(f"experiment {exp.exp_id}: {kind} {', '.join(map(str, run.ind_ids))} on {opts.dataset} "
          f"({len(run.data.train_x)} train, {len(run.data.test_x)} test images), device {device}"
          + (f", resumed from {resume.path}" if resume else ""), flush=True)
    with EpochWriter(exp, run.ind_ids, kind, opts.epochs) as writer:
        for epoch in range(run.first_epoch, opts.epochs + 1):
            if epoch:
                set_learning_rates(run.optimisers, opts, epoch)
            writes = []
            lines = EPOCHS[kind](exp, run, epoch, writes)
            writer.submit(writes + weights_writes(exp, run, epoch))
            print("\n".join(lines), flush=True)

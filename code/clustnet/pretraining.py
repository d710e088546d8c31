"""Training the other modes with ClustNet's files and guarantees: the one-expert baseline
(`--pretrain True`, detectNet<id>* files) and the convolutional autoencoder
(`--pretrain_cae True`, cae<id>* files and a reconstructions PNG per epoch).
"""

from functools import partial

import matplotlib.pyplot as plt

from . import layout
from .data import binary_targets
from .layout import CAE, DETECTNET
from .losses import nll
from .plots import save_figure
from .training import Mode, draw_views, eval_chunks, shuffled_order, train_pass

N_SHOWN = 8  # test images shown beside their reconstructions


def epoch_draws(run):
    """Each net's order of the training images and their views' uniforms for an epoch."""
    images, generators = run.data.train_x, run.generators
    return (shuffled_order(generators, len(images), images.device),
            draw_views(generators, len(images), run.opts, images.device))


def detectnet_scores(run, epoch):
    """Train the one-expert baseline an epoch (epoch 0: only evaluate): each set's
    log-probabilities (N, n, 2) and each net's loss."""
    data, model, opts = run.data, run.model, run.opts
    train_targets = binary_targets(data.train_y, opts.pos_classes)
    test_targets = binary_targets(data.test_y, opts.pos_classes)
    if epoch == 0:
        (train_log_probs,) = eval_chunks(model, data.train_x, opts, lambda x: (model(x),))
        train_loss = nll(train_log_probs, train_targets.expand(model.n_nets, -1)).cpu()
        train_log_probs = train_log_probs.cpu()
    else:
        def step_loss(view, index, batch, phase):
            log_probs = model(view(0))
            return nll(log_probs, train_targets[index]), (log_probs,)
        (train_log_probs,), train_loss = train_pass(model, run.optimisers, data.train_x, *epoch_draws(run), opts,
                                                    epoch, step_loss)
    (test_log_probs,) = eval_chunks(model, data.test_x, opts, lambda x: (model(x),))
    test_loss = nll(test_log_probs, test_targets.expand(model.n_nets, -1)).cpu()
    return (train_log_probs, train_loss), (test_log_probs.cpu(), test_loss)


def detectnet_report(exp, run, scores, epoch):
    """The writes of both scores CSVs (no clust columns) and a line per net."""
    writes, accuracy = [], {}
    for train, labels, (log_probs, _) in ((True, run.data.train_y.cpu(), scores[0]),
                                          (False, run.data.test_y.cpu(), scores[1])):
        targets = binary_targets(labels, run.opts.pos_classes).numpy()
        accuracy[train] = 100 * (log_probs.argmax(dim=-1).numpy() == targets).mean(axis=1)
        for net, ind_id in enumerate(run.ind_ids):
            path = exp.scores_path(ind_id, epoch, train, DETECTNET)
            writes.append((path, partial(layout.write_scores, path, labels.numpy(), targets,
                                         log_probs[net].numpy(), None)))
    (_, train_loss), (_, test_loss) = scores
    lines = [f"detectNet {ind_id} epoch {epoch}: train loss {train_loss[net]:.4f} binary "
             f"{accuracy[True][net]:.2f}% | test loss {test_loss[net]:.4f} binary {accuracy[False][net]:.2f}%"
             for net, ind_id in enumerate(run.ind_ids)]
    return writes, lines


def squared_error(reconstructions, images):
    """(N, B, C, H, W) -> (N, B) mean squared error per pixel of each image."""
    return (reconstructions - images).pow(2).flatten(2).mean(dim=2)


def reconstruction_error(run, images):
    """(N,) each net's mean squared error per pixel over `images`, in eval mode."""
    (errors,) = eval_chunks(run.model, images, run.opts, lambda x: (squared_error(run.model(x), x),))
    return errors.mean(dim=1).cpu()


def cae_scores(run, epoch):
    """Train the autoencoder an epoch (epoch 0: only evaluate): each net's reconstruction
    error per pixel on both sets, and its reconstructions of the first test images."""
    data, model, opts = run.data, run.model, run.opts
    if epoch == 0:
        train_error = reconstruction_error(run, data.train_x)
    else:
        def step_loss(view, index, batch, phase):
            images = view(0)
            return squared_error(model(images), images).mean(dim=1), ()
        _, train_error = train_pass(model, run.optimisers, data.train_x, *epoch_draws(run), opts, epoch, step_loss)
    (reconstructions,) = eval_chunks(model, data.test_x[:N_SHOWN], opts, lambda x: (model(x),))
    return train_error, reconstruction_error(run, data.test_x), reconstructions.cpu()


def cae_report(exp, run, scores, epoch):
    """The writes of the drawings of a few test images' reconstructions, and a line per net."""
    train_error, test_error, reconstructions = scores
    shown = run.data.unnormalise(run.data.test_x[:N_SHOWN].cpu())
    writes, lines = [], []
    for net, ind_id in enumerate(run.ind_ids):
        path = exp.reconstructions_path(ind_id, epoch)
        writes.append((path, partial(plot_reconstructions, shown, run.data.unnormalise(reconstructions[net]), path,
                                     f"autoencoder {ind_id}, epoch {epoch}")))
        lines.append(f"cae {ind_id} epoch {epoch}: reconstruction error per pixel (MSE, normalised images) "
                     f"train {train_error[net]:.5f} | test {test_error[net]:.5f}")
    return writes, lines


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


PRETRAINING_MODES = {DETECTNET: Mode(DETECTNET, detectnet_scores, detectnet_report),
                     CAE: Mode(CAE, cae_scores, cae_report)}

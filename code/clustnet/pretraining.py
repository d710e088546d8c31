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
from .metrics import accuracies
from .plots import save_figure
from .training import Mode, Scores, draw_views, eval_chunks, shuffled_order, train_pass

N_SHOWN = 8  # test images shown beside their reconstructions


def epoch_draws(run):
    """Each net's order of the training images and their views' uniforms for an epoch."""
    images, generators = run.data.train_x, run.generators
    return (shuffled_order(generators, len(images), images.device),
            draw_views(generators, len(images), run.opts, images.device))


def detectnet_train(run, epoch):
    """Train the one-expert baseline an epoch: the training set's Scores (no CN, so no
    cluster probabilities) and the mean binary loss over the steps."""
    data, model, opts = run.data, run.model, run.opts
    targets = binary_targets(data.train_y, opts.pos_classes)

    def step_loss(view, index, batch, phase):
        log_probs = model(view(0))
        losses = nll(log_probs, targets[index])
        return losses, {"binary": losses}, (log_probs,)
    (log_probs,), losses, parts = train_pass(model, run.optimisers, data.train_x, *epoch_draws(run), opts, epoch,
                                             step_loss)
    return Scores(log_probs, None, losses), parts


def detectnet_evaluate(run, split):
    """The one-expert baseline's log-probabilities (N, n, 2) and loss on a set, in eval mode."""
    model, opts = run.model, run.opts
    images, labels = run.data.split(split)
    (log_probs,) = eval_chunks(model, images, opts, lambda x: (model(x),))
    losses = nll(log_probs, binary_targets(labels, opts.pos_classes).expand(model.n_nets, -1))
    return Scores(log_probs.cpu(), None, losses.cpu())


def detectnet_report(exp, run, outputs, epoch):
    """The writes of each set's scores CSV (no clust columns), each net's measures and line."""
    writes, measures = [], [{} for _ in run.ind_ids]
    for split, scores in outputs.items():
        labels = run.data.split(split)[1].cpu()
        targets = binary_targets(labels, run.opts.pos_classes).numpy()
        labels = labels.numpy()
        for net, ind_id in enumerate(run.ind_ids):
            log_probs = scores.log_probs[net].numpy()
            path = exp.scores_path(ind_id, epoch, split, DETECTNET)
            writes.append((path, partial(layout.write_scores, path, labels, targets, log_probs, None)))
            measures[net][split] = {"loss": float(scores.loss[net]),
                                    **accuracies(labels, targets, log_probs, None, run.opts.pos_classes, [])}
    lines = [f"detectNet {ind_id} epoch {epoch}: " + " | ".join(
        f"{split} loss {values['loss']:.4f} binary {100 * values['binary']:.2f}%" for split, values in net.items())
        for ind_id, net in zip(run.ind_ids, measures)]
    return writes, measures, lines


def squared_error(reconstructions, images):
    """(N, B, C, H, W) -> (N, B) mean squared error per pixel of each image."""
    return (reconstructions - images).pow(2).flatten(2).mean(dim=2)


def cae_train(run, epoch):
    """Train the autoencoder an epoch: each net's mean reconstruction error per pixel over
    the steps (no reconstructions kept), and no loss parts."""
    model = run.model

    def step_loss(view, index, batch, phase):
        images = view(0)
        return squared_error(model(images), images).mean(dim=1), {}, ()
    _, errors, _ = train_pass(model, run.optimisers, run.data.train_x, *epoch_draws(run), run.opts, epoch, step_loss)
    return (errors, None), {}


def cae_evaluate(run, split):
    """Each net's mean reconstruction error per pixel (N,) over a set, in eval mode, and on
    the test set its reconstructions of the first N_SHOWN images."""
    model, opts = run.model, run.opts
    images = run.data.split(split)[0]
    (errors,) = eval_chunks(model, images, opts, lambda x: (squared_error(model(x), x),))
    reconstructions = None
    if split == "test":
        (reconstructions,) = eval_chunks(model, images[:N_SHOWN], opts, lambda x: (model(x),))
        reconstructions = reconstructions.cpu()
    return errors.mean(dim=1).cpu(), reconstructions


def cae_report(exp, run, outputs, epoch):
    """The writes of the drawings of a few test images' reconstructions, each net's
    measures (the reconstruction error of each set as its loss) and line."""
    _, reconstructions = outputs["test"]
    shown = run.data.unnormalise(run.data.test_x[:N_SHOWN].cpu())
    writes, measures, lines = [], [], []
    for net, ind_id in enumerate(run.ind_ids):
        path = exp.reconstructions_path(ind_id, epoch)
        writes.append((path, partial(plot_reconstructions, shown, run.data.unnormalise(reconstructions[net]), path,
                                     f"autoencoder {ind_id}, epoch {epoch}")))
        measures.append({split: {"loss": float(errors[net])} for split, (errors, _) in outputs.items()})
        lines.append(f"cae {ind_id} epoch {epoch}: reconstruction error per pixel (MSE, normalised images) "
                     + " | ".join(f"{split} {values['loss']:.5f}" for split, values in measures[net].items()))
    return writes, measures, lines


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


PRETRAINING_MODES = {
    DETECTNET: Mode(DETECTNET, detectnet_train, detectnet_evaluate, detectnet_report, lambda opts: ["binary"],
                    ("binary",), lambda exp, ind_id, epoch: {}),
    CAE: Mode(CAE, cae_train, cae_evaluate, cae_report, lambda opts: [], (),
              lambda exp, ind_id, epoch: {"reconstructions": exp.reconstructions_path(ind_id, epoch)}),
}

"""Training ClustNet: one or several seeds at once, an epoch at a time, every artifact saved.

The hot loop indexes tensors already in memory, keeps every per-step quantity on the
device (no `.item()`, no host sync) and reads them back once per epoch. What an epoch
writes is epoch_files.py's; the writing itself, in a background thread, writer.py's.
"""

import argparse
import dataclasses
import sys
import time
from dataclasses import dataclass
from typing import Callable

import torch
from tqdm import tqdm

from . import layout, run_record, tensorboard_log
from .averaging import averaged_model, copy_buffers, restore_average
from .epoch_files import MetricsLogs, clustnet_pictures, clustnet_report, weights_writes
from .nets import build_nets
from .resume import restore
from .data import ImageData, binary_targets, load_dataset, resolve_data_dir
from .errors import ClustNetError
from .augment import random_view, view_uniforms
from .layout import CLUSTNET, METRICS_ACCURACIES, Experiment
from .losses import CONSISTENCY_CUTS, active_term_options, clustnet_loss_parts, consistency_grad_at, mined_neighbours, \
    mines_neighbours, needs_second_view, nll, rotation_loss, scheduled_value, separated_cn_loss, warming_up
from .model import needs_noise, select_heads, unfold_heads
from .options import options_ini
from .speed import fast_cpu_kernels, set_threads
from .writer import EpochWriter


@dataclass
class Scores:
    """What the nets output on a set of images, in the set's order, on the CPU."""
    log_probs: torch.Tensor  # (N, n, 2)
    cluster_probs: torch.Tensor  # (N, n, K)
    loss: torch.Tensor  # (N,) mean loss


def select_device(opts):
    set_threads(opts.num_threads)
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


def train_pass(model, optimisers, images, order, views, opts, epoch, step_loss, averaged=None):
    """One pass over the training `images` in each net's `order` (N, n): the loop of every mode.

    `step_loss(view, index, batch, phase)` gives each net's loss (N,) on the images `index`
    (N, B) (positions `batch` of the order), the parts of the loss to log {name: (N,)} (the
    same names at every step; NaN where a step has no such part) and the outputs to keep,
    a tuple of (N, B, ...) tensors; `view(k)` is the batch in its random view k (0 or 1)
    drawn from `views` (draw_views; the images themselves when None, and view 0 with
    --clean_view), the one place where a batch is transformed; `phase` says whose turn it
    is (optimiser_phases). `averaged` (averaging.py), when given, follows the weights after
    every step. Returns the kept outputs in the set's order, each net's mean loss (N,) and
    each part's mean over the steps that have it {name: (N,)}, on the CPU."""
    model.train()
    n_uniforms = view_uniforms(opts)
    n_nets, n_images = order.shape
    phases = optimiser_phases(optimisers, opts)
    n_steps = -(-n_images // opts.batch_size)
    step_losses = torch.zeros(n_nets, n_steps, device=order.device)
    part_names, step_parts = None, None  # (parts, N, steps)
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
                if views is None or (k == 0 and opts.clean_view):
                    return batch_images
                return random_view(batch_images, views[:, batch, k * n_uniforms:(k + 1) * n_uniforms], opts)
            losses, parts, outputs = step_loss(view, index, batch, phase)
            model.zero_grad(set_to_none=True)
            losses.sum().backward()
            for optimiser in phases[phase]:
                optimiser.step()
            if averaged is not None:
                averaged.update_parameters(model)
            step_losses[:, step] = losses.detach()
            if kept is None:
                kept = [torch.empty(n_nets, n_images, *output.shape[2:], dtype=output.dtype, device=output.device)
                        for output in outputs]
                part_names = list(parts)
                step_parts = torch.empty(len(parts), n_nets, n_steps, device=order.device)
            for store, output in zip(kept, outputs):
                store[:, batch] = output.detach()
            for row, name in enumerate(part_names):
                step_parts[row, :, step] = parts[name].detach()
    check_finite(step_losses, epoch)
    means = torch.cat([step_losses.mean(dim=1).unsqueeze(0), step_parts.nanmean(dim=2)]).cpu()  # one read
    return [in_set_order(store, order).cpu() for store in kept], means[0], dict(zip(part_names, means[1:]))


def head_parts(opts):
    """The loss parts that give each CN head's training loss (--cn_heads > 1): head1, head2, ..."""
    return [f"head{head + 1}" for head in range(opts.cn_heads)] if opts.cn_heads > 1 else []


def per_net(losses, parts, opts):
    """The losses (N * H,) and parts of every CN head (the outputs fold them into the net
    axis) -> each net's (N,): the mean over its heads (what trains the shared encoder), each
    part's mean likewise, and each head's own loss as the part head<h>."""
    head_losses = losses.view(-1, opts.cn_heads)
    parts = {name: value.view(-1, opts.cn_heads).mean(dim=1) for name, value in parts.items()}
    return head_losses.mean(dim=1), {**parts, **dict(zip(head_parts(opts), head_losses.unbind(dim=1)))}


def train_epoch(model, optimisers, images, targets, generators, opts, epoch, averaged=None):
    """ClustNet's pass over the training images: the gate's samples, the augmented views and
    the separated mode's targets drawn from each net's generator, then train_pass. In the
    first --warmup_epochs epochs only the representation terms count and the CN does not
    step. With --cn_heads > 1 each head trains as a net of its own on the shared encoder
    (per_net), and the head with the smallest mean loss over the epoch becomes the net's
    selected head (SCAN's choice of head). `averaged`: the moving average of the weights
    (--weight_ema), updated after every step, its buffers the trained net's, and with
    --teacher_consistency the teacher. Returns the Scores (the selected head's) and the means
    of the loss's parts (clustnet_loss_parts; in the separated mode's CN turns the binary
    loss only)."""
    n_images, device, n_heads = len(images), images.device, opts.cn_heads
    opts = consistency_grad_at(opts, epoch)
    order = shuffled_order(generators, n_images, device)
    noise = uniform_noise(generators, n_images, opts.clust * n_heads, device)
    views = draw_views(generators, n_images, opts, device)
    separated = opts.clu_train_mode == "separated"
    cn_target_noise = uniform_noise(generators, n_images, 2, device) if separated else None
    turns = uniform_noise(generators, n_images, 1, device)[..., 0] if opts.rotation_pred else None
    partners = drawn_neighbours(model, images, targets, generators, opts) if mines_neighbours(opts) else None
    smallest_share = scheduled_value(opts.rand_prop_val_sched, opts.rand_prop_epo_sched, epoch)
    second_view = views is not None and needs_second_view(opts)
    terms = active_term_options(opts)
    teacher = averaged.module if opts.teacher_consistency else None  # options: --weight_ema is given
    if teacher is not None:
        teacher.train()  # its outputs fold the CN heads as the trained net's do
    cut = CONSISTENCY_CUTS.get(opts.consistency_grad) if opts.consistency > 0 else None  # view 1's cut p
    if warming_up(opts, epoch):  # SCAN's first stage: the representation learns, the CN waits
        optimisers = {name: optimiser for name, optimiser in optimisers.items() if name != "cn"}

    def step_loss(view, index, batch, phase):
        batch_targets = targets[index]
        first = view(0)  # warped once: the rotation term turns the same view
        out = model.outputs(first, noise[:, batch], cut=cut, encoder_share=opts.consistency_encoder_share)
        kept = (out.log_probs, out.probs)
        if separated and phase == 0:  # the CN's turn: its hard-EM target
            losses = separated_cn_loss(out, batch_targets, cn_target_noise[:, batch], smallest_share)
            binary = nll(out.log_probs, batch_targets)
            parts = {"binary": binary, **{term: torch.full_like(binary, float("nan")) for term in terms}}
        else:
            second = model.view_outputs(view(1)) if second_view else out  # no augmentation: one view
            if partners is not None:  # one more encoder pass: each image's mined neighbour, as it is
                neighbours = model.view_outputs(images[partners.gather(1, index)])
                out = dataclasses.replace(out, neighbour_probs=neighbours.probs)
            if teacher is not None:  # Mean Teacher: the moving average's choice on view 1
                with torch.no_grad():
                    out = dataclasses.replace(out, teacher_probs=teacher.view_outputs(first).probs)
            if n_heads == 1:
                losses, parts = clustnet_loss_parts(out, second, batch_targets, opts, epoch)
            else:
                losses, parts = per_net(*clustnet_loss_parts(out, second, batch_targets.repeat_interleave(
                    n_heads, 0), opts, epoch), opts)
                kept = (unfold_heads(out.log_probs, n_heads), unfold_heads(out.probs, n_heads))
        if turns is not None:  # RotNet's term: one more encoder pass, on the turned images
            parts["rotation_pred"] = rotation_loss(model, first, turns[:, batch])
            losses = losses + opts.rotation_pred * parts["rotation_pred"]
        return losses, parts, kept

    (log_probs, cluster_probs), losses, parts = train_pass(model, optimisers, images, order, views, opts, epoch,
                                                           step_loss, averaged)
    if n_heads > 1:
        model.selected_head.copy_(torch.stack([parts[name] for name in head_parts(opts)], dim=1).argmin(dim=1))
        log_probs, cluster_probs = (select_heads(values, model.selected_head) for values in (log_probs, cluster_probs))
    if averaged is not None:
        copy_buffers(averaged, model)
    return Scores(log_probs, cluster_probs, losses), parts


def drawn_neighbours(model, images, targets, generators, opts):
    """(N, n) for each net and training image, one of its --neighbours_k nearest training images
    in the net's z at the start of the epoch (losses.mined_neighbours, within its binary group),
    drawn from the net's generator: the neighbour --neighbours pairs it with in this epoch."""
    z, = eval_chunks(model, images, opts, lambda x: (model.representation(x),))
    table = torch.stack([mined_neighbours(net_z, targets, opts.neighbours_k) for net_z in z])  # (N, n, k)
    draws = uniform_noise(generators, len(images), 1, images.device) * opts.neighbours_k
    return table.gather(2, draws.long().clamp_max(opts.neighbours_k - 1)).squeeze(2)


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


@dataclass
class TrainingRun:
    opts: object
    data: ImageData
    ind_ids: list
    seeds: list
    ini_texts: list
    kind: str  # layout.CLUSTNET, DETECTNET or CAE
    model: torch.nn.Module  # the nets, initialised (or restored) and on the device
    averaged: torch.nn.Module | None  # --weight_ema: the moving average of their weights (averaging.py)
    optimisers: dict
    generators: list  # each net's own random numbers
    first_epoch: int  # 0, or the epoch after a resumed file's
    runs: list  # each net's run record: the runs that trained it (run_record.py)

    @property
    def evaluated(self):
        """The nets that are scored and analysed: the weights' moving average with --weight_ema."""
        return self.model if self.averaged is None else self.averaged.module


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
    if kind == CLUSTNET and mines_neighbours(opts):
        group_sizes = torch.bincount(binary_targets(data.train_y, opts.pos_classes), minlength=2)
        if opts.neighbours_k >= group_sizes.min():
            raise ClustNetError(f"--neighbours_k {opts.neighbours_k}: a binary group of the training set holds "
                                f"only {int(group_sizes.min())} images; it must hold more than k")
    height, width = data.train_x.shape[-2:]
    if kind == CLUSTNET and opts.rotation_pred and height != width:
        raise ClustNetError(f"--rotation_pred turns the images by quarter-turns: it needs square images, "
                            f"not {height}x{width}")


def net_ini(opts, seed, ind_id, runs):
    """The .ini of one net of the run: its options, as if it had been run alone with that
    seed, then its run record (`runs`)."""
    return options_ini(argparse.Namespace(**dict(vars(opts), seed=seed, seeds=[], ind_id=ind_id))) + \
        run_record.ini_text(runs)


def prepare(opts, kind=CLUSTNET, resume=None, argv=None):
    """Check the options, load the data, build the nets, initialise them from the --init*
    files or restore resumed ones (`resume`, a resume.Resume), and claim the nets' ids:
    nothing is written before every check has passed. `argv`: the command line's arguments,
    for the run record (default: sys.argv's)."""
    device = select_device(opts)
    opts.data_dir = str(resolve_data_dir(opts.data_dir))
    exp = Experiment(opts.exp_id)
    if opts.tensorboard:
        tensorboard_log.check_available()
    data = load_dataset(opts.dataset, opts.data_dir, opts.val_size)
    check_against_data(opts, data, kind)
    seeds = opts.seeds or [opts.seed]
    generators = [torch.Generator().manual_seed(seed) for seed in seeds]
    model = build_nets(kind, data.image_shape, opts, generators, initialise_from_files=resume is None).to(device)
    optimisers = make_optimisers(model, opts) if kind == CLUSTNET else {"main": make_optimiser(model.parameters(), opts)}
    started = run_record.run_started(sys.argv[1:] if argv is None else argv, device)
    exp.create_folders(kind)  # an unwritable output root: one error, before anything is written
    if resume is not None:
        ind_ids = resume.ind_ids
        runs = [run_record.resumed_runs(started, checkpoint, path)
                for checkpoint, path in zip(resume.checkpoints, resume.paths)]
        ini_texts = [net_ini(opts, seed, ind_id, net_runs) for seed, ind_id, net_runs in zip(seeds, ind_ids, runs)]
        restore(resume, exp, model, optimisers, generators, ini_texts)
    else:
        ind_ids, ini_texts, runs = [], [], [[started] for _ in seeds]
        for seed in seeds:
            requested = None if opts.ind_id is None else opts.ind_id + len(ind_ids)
            # --resume True starting its nets: resume.resume_nets checked any .ini already there
            ind_id = exp.claim_ind_id(lambda i: net_ini(opts, seed, i, [started]), requested,
                                      opts.overwrite or opts.resume, kind)
            ind_ids.append(ind_id)
            ini_texts.append(net_ini(opts, seed, ind_id, [started]))
    averaged = averaged_model(model, opts.weight_ema)
    if averaged is not None and resume is not None:
        restore_average(averaged, resume.checkpoints)
    first_epoch = 0 if resume is None else resume.epoch + 1
    run = TrainingRun(opts, data.to(device), ind_ids, seeds, ini_texts, kind, model, averaged, optimisers,
                      generators, first_epoch, runs)
    return exp, run, device


@dataclass(frozen=True)
class Mode:
    """What one kind of net does in an epoch, for the epoch loop (train_epochs)."""
    name: str  # in the first printed line
    train: Callable  # (run, epoch) -> the training set's outputs of an epoch's training pass, and the means
    #                  over its steps of the loss's parts {name: (N,)}
    evaluate: Callable  # (run, split) -> the outputs on the set `split` (train, val or test), in eval mode
    report: Callable  # (exp, run, {split: outputs}, epoch) -> (the writes of the epoch's files, each net's
    #                   measures {split: {"loss": ..., accuracy: ...}}, a printed line per net)
    step_terms: Callable  # opts -> the names of the parts `train` gives (the metrics log's loss_* columns)
    accuracies: tuple  # the accuracies in the measures of a set
    pictures: Callable  # (exp, ind_id, epoch) -> {tag: path} the epoch's PNGs that TensorBoard shows


def clustnet_train(run, epoch):
    data, opts = run.data, run.opts
    targets = binary_targets(data.train_y, opts.pos_classes)
    return train_epoch(run.model, run.optimisers, data.train_x, targets, run.generators, opts, epoch, run.averaged)


def clustnet_evaluate(run, split):
    images, labels = run.data.split(split)
    return evaluate(run.evaluated, images, binary_targets(labels, run.opts.pos_classes), run.generators, run.opts)


def clustnet_step_terms(opts):
    """The parts of ClustNet's training loss, as train_epoch names them."""
    return ["binary", *active_term_options(opts), *head_parts(opts), *(["rotation_pred"] if opts.rotation_pred else [])]


CLUSTNET_MODE = Mode("nets", clustnet_train, clustnet_evaluate, clustnet_report, clustnet_step_terms,
                     METRICS_ACCURACIES, clustnet_pictures)


def train(opts, kind, mode, resume=None, argv=None):
    """Train the nets of `opts` (a `kind` of net, trained as `mode` says) for opts.epochs
    epochs, from the epoch after `resume`'s when continuing nets (train_epochs). `argv`: the
    command line's arguments, for the run record."""
    exp, run, device = prepare(opts, kind, resume, argv)
    sizes = ", ".join(f"{len(run.data.split(split)[1])} {name}" for split, name in
                      (("train", "train"), ("val", "validation"), ("test", "test")) if split in run.data.splits)
    print(f"experiment {exp.exp_id}: {mode.name} {', '.join(map(str, run.ind_ids))} on {opts.dataset} "
          f"({sizes} images), device {device}" + (f", resumed from {resume.path}" if resume else ""), flush=True)
    with EpochWriter(exp, run.ind_ids, kind, opts.epochs) as writer:
        train_epochs(exp, run, mode, writer)


def train_epochs(exp, run, mode, writer):
    """Train `run`'s nets from epoch run.first_epoch to opts.epochs (epoch 0: the initial nets,
    only scored), each epoch's files handed to `writer` (writer.EpochWriter: written by a
    background thread while the next epoch trains, the weights last), a line per net printed."""
    logs = MetricsLogs(exp, run, mode)
    for epoch in range(run.first_epoch, run.opts.epochs + 1):
        start = time.perf_counter()
        outputs, step_means = {}, {}
        if epoch:
            set_threads(run.opts.num_threads)  # other runs may have started or ended
            set_learning_rates(run.optimisers, run.opts, epoch)
            outputs["train"], step_means = mode.train(run, epoch)
        trained = time.perf_counter()
        for split in run.data.splits:
            if split not in outputs:
                outputs[split] = mode.evaluate(run, split)
        evaluated = time.perf_counter()
        # What writing costs the training thread: the accuracies, waiting for the previous
        # epoch's files when the writer lags behind, the snapshot of the weights.
        writes, measures, lines = mode.report(exp, run, outputs, epoch)
        writer.wait()
        end_time = run_record.now()
        weights = weights_writes(exp, run, epoch, end_time)
        machine = {**dict(zip(layout.METRICS_TIMES, (trained - start, evaluated - trained,
                                                     time.perf_counter() - evaluated))),
                   layout.METRICS_THREADS: torch.get_num_threads()}
        writer.submit(writes + logs.writes(epoch, step_means, measures, machine, end_time) + weights)
        seconds, written = evaluated - start, time.perf_counter() - evaluated
        print("\n".join(f"{line} | {seconds:.1f} s + {written:.1f} s writing" for line in lines), flush=True)

"""Speed measurements of the training code (benchmark.py): training and evaluation images per
second on MNIST-shaped random data, the time to write one epoch's artifacts, several seeds at
once, and real trainVal.py epochs on MNIST with their peak memory; and this checkout's training
speed side by side with another checkout's."""

import contextlib
import importlib
import importlib.util
import io
import os
import re
import resource
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import torch
import torch.nn.functional as F

from .averaging import averaged_model
from .epoch_files import scores_writes, weights_writes
from .errors import ClustNetError
from .layout import CLUSTNET, PROJECT_ROOT, Experiment
from .model import ClustNet, ModelConfig
from .modes import MODES
from .nets import run_kind
from .options import parse_options
from .training import Scores, evaluate, make_optimisers, prepare, train_epoch, train_epochs
from .writer import EpochWriter

IMAGE_SHAPE = (1, 28, 28)
MNIST_SIZES = (60000, 10000)  # train, test images: what one epoch's artifacts cover
WARMUP_STEPS = 20


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(function, device):
    """(seconds, result) of function(), the device's queued work included."""
    synchronize(device)
    start = time.perf_counter()
    result = function()
    synchronize(device)
    return time.perf_counter() - start, result


def default_options(batch_size, extra=(), config="clust.config"):
    """`config`'s options (by default the published method's), no progress bar."""
    return parse_options(["-c", str(PROJECT_ROOT / config), "--batch_size", str(batch_size),
                          "--progress", "False", *extra])


def build(n_nets, opts, device):
    generators = [torch.Generator().manual_seed(seed) for seed in range(1, n_nets + 1)]
    model = ClustNet(n_nets, ModelConfig.from_options(opts, IMAGE_SHAPE))
    model.reset_parameters(generators)
    model.to(device)
    return model, make_optimisers(model, opts), generators


def random_images(n_images, device, seed=0):
    """MNIST-shaped normalised images and binary targets, on the device."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(n_images, *IMAGE_SHAPE, generator=generator)
    return images.to(device), torch.randint(0, 2, (n_images,), generator=generator).to(device)


# The representation ingredients of the gate study (issue 17) on top of clust_best.config; the
# projection head and the over-clustering head read one z per net (its heads on one z).
REPRESENTATION_OPTIONS = ("--contrastive", "1", "--proj_size", "64", "--aug_crop", "0.5", "--overclust", "25",
                          "--overclust_iic", "1", "--heads_own_z", "False")


def train_speed(batch_size, n_nets, n_images, device, config="clust.config", extra=()):
    """Training images per second (all nets together) over `n_images` images after a warm-up."""
    steps = max(1, n_images // batch_size)
    opts = default_options(batch_size, extra, config=config)
    model, optimisers, generators = build(n_nets, opts, device)
    averaged = averaged_model(model, opts.weight_ema)  # as trainVal.py's step: the average follows it
    images, targets = random_images(steps * batch_size, device)
    warmup = WARMUP_STEPS * batch_size
    train_epoch(model, optimisers, images[:warmup], targets[:warmup], generators, opts, 1, averaged)
    seconds, _ = timed(lambda: train_epoch(model, optimisers, images, targets, generators, opts, 1, averaged), device)
    return n_nets * len(images) / seconds


# clust_best.config as it was before SCAN's heads and the clean first view: one CN head on one z,
# both views augmented (the cost budget is twice that config's).
PREVIOUS_OPTIONS = ("--cn_heads", "1", "--heads_own_z", "False", "--clean_view", "False")


def gate_terms_cost(batch_sizes, n_images, device):
    """The cost of clust_best.config's training (a clean and an augmented view, its terms on
    the gate, ten CN heads each with its own z), against the published step's and that of
    clust_best.config as it was (PREVIOUS_OPTIONS), and of it with every representation
    ingredient on (REPRESENTATION_OPTIONS), on one net: milliseconds per step at each batch size."""
    rows = []
    variants = (("published", "clust.config", ()), ("clust_best", "clust_best.config", ()),
                ("previous", "clust_best.config", PREVIOUS_OPTIONS),
                ("representation", "clust_best.config", REPRESENTATION_OPTIONS))
    for batch_size in batch_sizes:
        row = {"batch_size": batch_size}
        for name, config, extra in variants:
            row[f"{name}_step_ms"] = 1000 * batch_size / train_speed(batch_size, 1, n_images, device, config, extra)
        row["x_published"] = row["clust_best_step_ms"] / row["published_step_ms"]
        row["x_previous"] = row["clust_best_step_ms"] / row["previous_step_ms"]
        row["representation_x_clust_best"] = row["representation_step_ms"] / row["clust_best_step_ms"]
        rows.append(row)
    return pd.DataFrame(rows)


def eval_speed(n_nets, device, n_images=MNIST_SIZES[1]):
    """Evaluation images per second (all nets) on a test-set-sized batch of images."""
    opts = default_options(4)
    model, _, generators = build(n_nets, opts, device)
    images, targets = random_images(n_images, device)
    evaluate(model, images[:opts.test_batch_size], targets[:opts.test_batch_size], generators, opts)
    seconds, _ = timed(lambda: evaluate(model, images, targets, generators, opts), device)
    return n_nets * n_images / seconds


def random_scores(n_images, n_clusters, generator):
    return Scores(F.log_softmax(torch.randn(1, n_images, 2, generator=generator), dim=-1),
                  F.softmax(torch.randn(1, n_images, n_clusters, generator=generator), dim=-1), torch.zeros(1))


def write_seconds(device):
    """Seconds to write one net's artifacts of a full MNIST epoch, as training writes them:
    both scores CSVs (60,000 and 10,000 rows) with their accuracies, the two confusion PNGs
    and the weights file, here in this thread."""
    opts = default_options(4)
    model, optimisers, generators = build(1, opts, device)
    generator = torch.Generator().manual_seed(0)
    labels = {split: torch.randint(0, 10, (n,), generator=generator)
              for split, n in zip(("train", "test"), MNIST_SIZES)}
    scores = {split: random_scores(len(split_labels), opts.clust, generator) for split, split_labels in labels.items()}
    data = SimpleNamespace(classes=[str(c) for c in range(10)], split=lambda split: (None, labels[split]))
    run = SimpleNamespace(opts=opts, data=data, ind_ids=[1], kind=CLUSTNET, model=model,
                          averaged=averaged_model(model, opts.weight_ema), optimisers=optimisers,
                          generators=generators, ini_texts=[""], runs=[[]])
    with tempfile.TemporaryDirectory() as root:
        exp = Experiment("benchmark", root=root)
        start = time.perf_counter()
        writes = [write for split in scores for write in scores_writes(exp, run, scores[split], split, 1)[1]]
        for _, write in writes + weights_writes(exp, run, 1, ""):
            write()
        return time.perf_counter() - start


class InlineWriter(EpochWriter):
    """Writes each epoch's files in the training thread, as before the background writer."""

    def submit(self, writes):
        start = time.perf_counter()
        self.write_all(list(writes))
        return time.perf_counter() - start


class DiscardingWriter(EpochWriter):
    """Writes no epoch's files: the reference for an epoch's cost without them."""

    def submit(self, writes):
        return 0.0


EPOCH_LINE = re.compile(r"net \d+ epoch 1: .*\| test loss \S+ binary (\S+)% .*\| (\S+) s \+ (\S+) s writing")

# How the real epochs write their files: not at all (the reference), in the training thread
# as before the background writer, and in the background (what trainVal.py does).
WRITERS = {"discard": DiscardingWriter, "inline": InlineWriter, "background": EpochWriter}
WRITER_MODES = tuple(WRITERS)


def real_epoch(argv, output_root, writer_mode="background"):
    """One trainVal.py run (`argv`, epoch 0's evaluation then epoch 1) in this process, its
    files under `output_root`, written as `writer_mode` (WRITERS) says: epoch 1's seconds of
    training + test evaluation, the seconds its writing held the training thread (inline: the
    writing; background: the hand-over, and waiting for epoch 0's files if they were not
    done), the mean test binary accuracy, the whole run's seconds and the peak memory in MB
    (CUDA: allocated by PyTorch; CPU: the process's peak resident size). Meant for a fresh
    process.

    In the background, epoch 0's files are written while epoch 1 trains, as every epoch's
    files while the next trains in a longer run: epoch 1's seconds are a steady epoch's."""
    os.environ["CLUSTNET_ROOT"] = output_root
    cuda = torch.cuda.is_available() and "--no_cuda" not in argv
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    printed = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(printed):
        opts = parse_options(argv)
        kind = run_kind(opts)
        exp, run, _ = prepare(opts, kind, argv=argv)
        with WRITERS[writer_mode](exp, run.ind_ids, kind, opts.epochs) as writer:
            train_epochs(exp, run, MODES[kind], writer)
    total = time.perf_counter() - start
    lines = [[float(v) for v in found] for found in EPOCH_LINE.findall(printed.getvalue())]
    accuracy = sum(line[0] for line in lines) / len(lines)
    seconds, writing = lines[0][1:]
    peak = torch.cuda.max_memory_allocated() if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"epoch_s": seconds, "epoch_write_s": writing, "run_s": total, "peak_MB": peak / 2 ** 20,
            "test_binary_%": accuracy}


def real_epoch_in_fresh_process(data_dir, batch_size, extra, n_nets=1, writer_mode="background"):
    """real_epoch on MNIST at `batch_size` (n_nets > 1: that many --seeds) in a new process,
    so that its peak memory is its own."""
    seeds = ["--seeds", *map(str, range(1, n_nets + 1))] if n_nets > 1 else []
    argv = ["-c", str(PROJECT_ROOT / "clust.config"), "--exp_id", "benchmark", "--epochs", "1",
            "--batch_size", str(batch_size), "--data_dir", str(data_dir), "--progress", "False", *seeds, *extra]
    with tempfile.TemporaryDirectory() as root, \
            ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(real_epoch, argv, root, writer_mode).result()


def real_epoch_columns(data_dir, batch_size, extra, n_nets):
    """The real-epoch columns of a row: the epoch without writing, with inline writing, with
    the background writer (seconds and % over the epoch without writing), and the background
    run's peak memory and accuracy."""
    runs = {mode: real_epoch_in_fresh_process(data_dir, batch_size, extra, n_nets, mode) for mode in WRITER_MODES}
    reference = runs["discard"]["epoch_s"]
    columns = {"real_epoch_s": reference}
    for mode, name in (("inline", "inline"), ("background", "bg")):
        wall = runs[mode]["epoch_s"] + runs[mode]["epoch_write_s"]
        columns[f"{name}_write_epoch_s"] = wall
        columns[f"{name}_write_%"] = 100 * (wall / reference - 1)
    columns["bg_handover_s"] = runs["background"]["epoch_write_s"]
    columns["peak_MB"] = runs["background"]["peak_MB"]
    columns["test_binary_%"] = runs["background"]["test_binary_%"]
    return columns


def configurations(batch_sizes, seeds):
    """(batch size, nets) of the table's rows: one net at each batch size, then `seeds` nets
    at the smallest."""
    return [(b, 1) for b in batch_sizes] + ([(min(batch_sizes), seeds)] if seeds > 1 else [])


def benchmark(batch_sizes, n_images, seeds, data_dir, real_batch_sizes, device, extra, report=print,
              real_only=False):
    """The table: one row per batch size (one net), one for `seeds` nets at the smallest batch
    size, with the real-epoch columns where `data_dir` is given (`real_only`: only the rows
    that have them, without the random-data timings)."""
    rows = []
    real = data_dir is not None
    for batch_size, n_nets in configurations(batch_sizes, seeds):
        if real_only and not (real and batch_size in real_batch_sizes):
            continue
        row = {"batch_size": batch_size, "nets": n_nets}
        if not real_only:
            row["train_img_s"] = train_speed(batch_size, n_nets, n_images, device)
            row["eval_img_s"] = eval_speed(n_nets, device)
            if n_nets == 1:
                row["write_epoch_s"] = write_seconds(device)
            else:
                one_net = next(r for r in rows if r["batch_size"] == batch_size and r["nets"] == 1)
                row["x_one_net"] = row["train_img_s"] / one_net["train_img_s"]
        if real and batch_size in real_batch_sizes:
            row.update(real_epoch_columns(data_dir, batch_size, extra, n_nets))
        report(f"batch size {batch_size}, {n_nets} net(s): " + ", ".join(
            f"{k} {v:.4g}" for k, v in row.items() if k not in ("batch_size", "nets")))
        rows.append(row)
    return pd.DataFrame(rows)


def checkout_benchmarking(code_dir):
    """The benchmarking module of another checkout's clustnet package (`code_dir`: that
    checkout's code/ folder), imported under its own name beside this one."""
    package = Path(code_dir).resolve() / "clustnet"
    if not (package / "benchmarking.py").is_file():
        raise ClustNetError(f"--against {code_dir}: no clustnet/benchmarking.py there (give the code/ folder "
                            "of another checkout, e.g. one made by git worktree add)")
    spec = importlib.util.spec_from_file_location("clustnet_against", package / "__init__.py",
                                                  submodule_search_locations=[str(package)])
    sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sys.modules[spec.name])
    return importlib.import_module(f"{spec.name}.benchmarking")


def side_by_side(other, batch_sizes, n_images, seeds, rounds, device):
    """Training images/s of this checkout and of `other` (checkout_benchmarking's module) on
    the table's configurations, timed in one process, interleaved `rounds` times in
    alternating order: on a machine whose speed drifts (a shared VM), runs made minutes apart
    differ by more than a change being measured. The medians and their ratio, one row each."""
    rows = []
    for batch_size, n_nets in configurations(batch_sizes, seeds):
        sides = [("train_img_s", train_speed), ("against_img_s", other.train_speed)]
        speeds = {name: [] for name, _ in sides}
        for round_index in range(rounds):
            for name, speed in sides if round_index % 2 == 0 else sides[::-1]:
                speeds[name].append(speed(batch_size, n_nets, n_images, device))
        row = {"batch_size": batch_size, "nets": n_nets, **{k: statistics.median(v) for k, v in speeds.items()}}
        row["ratio"] = row["train_img_s"] / row["against_img_s"]
        rows.append(row)
    return pd.DataFrame(rows)

"""Speed switches, in one place: choices that change how fast training runs. The training
loop of every mode (training.train_pass) runs inside `fast_cpu_kernels`, the encoder
(model.Encoder) lays its feature maps out in FEATURE_MAP_FORMAT, and `set_threads` chooses
PyTorch's CPU threads at the start of a run and of each epoch.
"""

import os
from contextlib import contextmanager

import torch

# The encoder's feature maps are channels-last in memory: the CPU's grouped convolution and
# max-pooling run several times faster that way than on NCHW (see benchmark.py).
FEATURE_MAP_FORMAT = torch.channels_last


def use_onednn(device, n_nets, batch_size):
    """Whether a training step uses PyTorch's oneDNN CPU kernels. For a single net at batch
    size <= 4 on the CPU, PyTorch's plain CPU convolution has less per-call overhead than
    oneDNN's (about 10% more images/s, benchmark.py); larger batches and stacked seeds are
    faster with oneDNN, and on a GPU the switch changes nothing."""
    return device.type != "cpu" or n_nets * batch_size > 4


@contextmanager
def onednn_convolutions(enabled):
    """Use (or not) PyTorch's oneDNN CPU kernels inside the block."""
    previous = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = enabled
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = previous


def fast_cpu_kernels(device, n_nets, batch_size):
    """The context a training loop of `n_nets` stacked nets at `batch_size` runs in on `device`."""
    return onednn_convolutions(use_onednn(device, n_nets, batch_size))


# PyTorch's own default: one thread per core (or OMP_NUM_THREADS), before any set_threads.
DEFAULT_THREADS = torch.get_num_threads()


def trainval_pids():
    """The process ids of the other trainVal.py runs on this machine now (Linux's /proc;
    stopped and ended ones left out; none where /proc is absent)."""
    pids = set()
    try:
        entries = [int(entry.name) for entry in os.scandir("/proc") if entry.name.isdigit()]
    except OSError:
        return pids
    for pid in entries:
        if pid == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as file:
                argv = file.read().split(b"\0")
            if not (os.path.basename(argv[0]).startswith(b"python")
                    and any(os.path.basename(arg) == b"trainVal.py" for arg in argv[1:])):
                continue
            with open(f"/proc/{pid}/stat") as file:
                state = file.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue  # it ended meanwhile, or is not ours to read
        if state not in ("T", "t", "Z", "X"):
            pids.add(pid)
    return pids


def set_threads(num_threads):
    """Set PyTorch's CPU threads: `num_threads` when given (> 0), else the machine's cores
    (DEFAULT_THREADS) shared evenly among the trainVal.py runs on it, this one included.

    Several runs each with one thread per core crawl: PyTorch's OpenMP threads busy-wait
    for each other, and on shared cores a run's threads wait for one that is not running
    (4 one-epoch runs at once on 2 cores: 13 times as long as one run alone; with the cores
    shared, 2.8 times: experiments/parallel_runs.py). Called at the start of the run and of each epoch,
    so a run gives cores up when others start and takes them back when they end. The
    number of threads changes the last bits of the results: give --num_threads for runs
    that must match bit for bit. Returns the number set."""
    threads = num_threads or max(1, DEFAULT_THREADS // (1 + len(trainval_pids())))
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    return threads

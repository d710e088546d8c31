"""Speed switches, in one place: choices that change how fast training runs, not what it
computes. The training loop of every mode (training.train_pass) runs inside
`fast_cpu_kernels`, and the encoder (model.Encoder) lays its feature maps out in
FEATURE_MAP_FORMAT.
"""

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

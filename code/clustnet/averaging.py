"""--weight_ema: an exponential moving average of each net's weights, the net that is evaluated
(timm's --model-ema, Polyak averaging; Mean Teacher, Tarvainen & Valpola 2017).

The trained weights take the steps; after each step the average moves towards them by
1 - decay (torch.optim.swa_utils.AveragedModel), the decay warmed up as TensorFlow's
ExponentialMovingAverage and timm's ModelEmaV3 do it: min(decay, (1 + n) / (10 + n)) at the
n-th update, so that in a short run (a small dataset) the initial weights do not dominate
the average. Every weight is stacked on the nets' axis and averaged elementwise, so the nets
of a --seeds run stay apart. The buffers (which head is the CN, batch-norm statistics) are
the trained net's, copied over."""

import torch
from torch.optim.swa_utils import AveragedModel

from .model import load_net_states


def averaged_model(model, decay):
    """The moving average of `model`'s weights, starting from them; None when decay is 0."""
    if not decay:
        return None

    @torch.no_grad()
    def move_towards(averaged, trained, n_averaged):
        n = int(n_averaged)
        torch._foreach_lerp_(averaged, trained, 1 - min(decay, (1 + n) / (10 + n)))
    return AveragedModel(model, multi_avg_fn=move_towards)


@torch.no_grad()
def copy_buffers(averaged, model):
    """The trained net's buffers into the average (selected_head is set after the epoch's steps)."""
    for kept, trained in zip(averaged.module.buffers(), model.buffers(), strict=True):
        kept.copy_(trained)


def restore_average(averaged, checkpoints):
    """Each resumed net's averaged weights and the number of steps averaged, from its weights file."""
    load_net_states(averaged.module, [checkpoint["model_ema"] for checkpoint in checkpoints])
    averaged.n_averaged.fill_(checkpoints[0]["ema_steps"])

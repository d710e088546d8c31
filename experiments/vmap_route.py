"""Why `--seeds` stacks its layers by hand: the time of one ClustNet training step through
PyTorch's standard ensembling route (plain one-net modules, `torch.func.stack_module_state` +
`vmap(functional_call(...))`) against `clustnet.model`'s stacked layers, side by side.

Usage: python3 experiments/vmap_route.py [--nets 8] [--batch_sizes 4 64] [--steps 100]
Prints milliseconds per step (forward, binary loss, backward, fused SGD) on random
MNIST-shaped images, clust.config's architecture and gate (DE), one CPU thread by default.
Rows: the stacked model, the vmap route with PyTorch's pooling, and the vmap route with a
pooling whose batching rule runs channels-last (as the stacked encoder does); with one net,
the plain module called directly. Each is timed twice, alternating, to show the noise."""

import argparse
import copy
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "code"))
from clustnet.losses import image_nll  # noqa: E402
from clustnet.model import ClustNet, ModelConfig, gate  # noqa: E402
from clustnet.options import parse_options  # noqa: E402

IMAGE_SHAPE = (1, 28, 28)


class ChannelsLastPool(torch.autograd.Function):
    """2x2 max-pooling on channels-last memory, with a batching rule that folds the nets into
    the channels, so that under vmap the pooling runs on one channels-last map as well."""

    @staticmethod
    def forward(x):
        return F.max_pool2d(x.contiguous(memory_format=torch.channels_last), 2, return_indices=True)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.mark_non_differentiable(output[1])
        ctx.save_for_backward(inputs[0], output[1])

    @staticmethod
    def backward(ctx, grad, _):
        x, indices = ctx.saved_tensors
        return torch.ops.aten.max_pool2d_with_indices_backward(grad, x, [2, 2], [2, 2], [0, 0], [1, 1],
                                                               False, indices)

    @staticmethod
    def vmap(info, in_dims, x):
        x = x.movedim(in_dims[0], 1)  # (B, N, C, H, W)
        pooled, indices = ChannelsLastPool.apply(x.flatten(1, 2))
        return (pooled.unflatten(1, x.shape[1:3]), indices.unflatten(1, x.shape[1:3])), (1, 1)


class PlainClustNet(nn.Module):
    """clust.config's ClustNet (one dense DN layer) for one net, as the PyTorch examples write it."""

    def __init__(self, config, channels_last_pool):
        super().__init__()
        self.config, self.channels_last_pool = config, channels_last_pool
        channels, size = config.image_shape[0], config.image_shape[1]
        convs = []
        for block in range(config.encnblayers):
            convs.append(nn.Conv2d(channels, config.encnbfilters * 2 ** block, 5))
            channels, size = config.encnbfilters * 2 ** block, (size - 4) // 2
        self.convs = nn.ModuleList(convs)
        self.dense = nn.Linear(channels * size * size, config.enchidd_repr_size)
        self.cn = nn.Sequential(nn.Linear(config.enchidd_repr_size, config.clhidd_repr_size), nn.ReLU(),
                                nn.Linear(config.clhidd_repr_size, config.clust))
        self.dn = nn.Linear(config.enchidd_repr_size, config.clust * 2)  # the K linear DNs side by side

    def pool(self, x):
        return ChannelsLastPool.apply(x)[0] if self.channels_last_pool else F.max_pool2d(x, 2)

    def forward(self, x, noise):
        for conv in self.convs:
            x = F.relu(self.pool(conv(x)))
        z = F.relu(self.dense(x.flatten(1)))
        logits = self.cn(z)
        h = gate(F.softmax(logits, dim=-1), logits, self.config.decision_clu, True, noise)
        mixed = (h.unsqueeze(-1) * self.dn(z).unflatten(-1, (self.config.clust, 2))).sum(dim=1)
        return F.log_softmax(mixed, dim=-1)


def sgd_step(forward, parameters, targets):
    optimiser = torch.optim.SGD(parameters, lr=0.01, momentum=0.5, fused=True)

    def step():
        log_probs = forward()
        loss = image_nll(log_probs, targets).mean(dim=-1).sum()  # each net's mean NLL, summed
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return step


def steps(config, n_nets, batch_size):
    """{route: a function doing one training step} on the same random batch."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(n_nets, batch_size, *IMAGE_SHAPE, generator=generator)
    noise = torch.rand(n_nets, batch_size, config.clust, generator=generator)
    targets = torch.randint(0, 2, (n_nets, batch_size), generator=generator)
    stacked = ClustNet(n_nets, config).train()
    stacked.reset_parameters([torch.Generator().manual_seed(seed) for seed in range(n_nets)])
    routes = {"stacked layers": sgd_step(lambda: stacked(images, noise)[0], stacked.parameters(), targets)}
    if n_nets == 1:
        plain = PlainClustNet(config, channels_last_pool=True)
        routes["plain module"] = sgd_step(lambda: plain(images[0], noise[0]), plain.parameters(), targets[0])
        return routes
    for name, channels_last_pool in (("vmap", False), ("vmap, channels-last pool rule", True)):
        nets = [PlainClustNet(config, channels_last_pool) for _ in range(n_nets)]
        params, _ = stack_module_state(nets)
        base = copy.deepcopy(nets[0]).to("meta")
        batched = vmap(lambda p, x, u, base=base: functional_call(base, p, (x, u)))
        routes[name] = sgd_step(lambda batched=batched, params=params: batched(params, images, noise),
                                params.values(), targets)
    return routes


def milliseconds(step, n_steps):
    for _ in range(10):
        step()
    start = time.perf_counter()
    for _ in range(n_steps):
        step()
    return 1000 * (time.perf_counter() - start) / n_steps


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[4, 64])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--num_threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.num_threads)
    root = Path(__file__).resolve().parents[1]
    config = ModelConfig.from_options(parse_options(["-c", str(root / "clust.config")]), IMAGE_SHAPE)
    if (config.clnblayers, config.denblayers) != (2, 1):
        sys.exit("error: PlainClustNet is written for clust.config's clnblayers = 2 and denblayers = 1")
    for n_nets in args.nets:
        for batch_size in args.batch_sizes:
            # oneDNN as trainVal.py uses it (speed.use_onednn): off for one net at batch size 4.
            with torch.backends.mkldnn.flags(enabled=n_nets * batch_size > 4):
                routes = steps(config, n_nets, batch_size)
                times = {name: [] for name in routes}
                for _ in range(2):
                    for name, step in routes.items():
                        times[name].append(milliseconds(step, args.steps))
            reference = sum(times["stacked layers"]) / 2
            for name, values in times.items():
                mean = sum(values) / 2
                print(f"{n_nets} net(s), batch size {batch_size:3d}: {name:30s} "
                      f"{values[0]:7.2f} / {values[1]:7.2f} ms a step ({mean / reference - 1:+.0%})", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])

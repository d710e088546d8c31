"""ClustNet: a shared conv encoder, a clustering network (the gate) and detecting networks.

Every layer holds the weights of `n_nets` independent nets stacked on a leading axis, so
that several seeds train together as one batched computation (`--seeds`); a single net is
the case n_nets = 1. Tensors flow as (n_nets, batch, ...). The DNs of one net are held the
same way, with an expert axis, and all evaluated by one batched matmul.
"""

import math
from dataclasses import dataclass, fields
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .speed import FEATURE_MAP_FORMAT


@dataclass(frozen=True)
class ModelConfig:
    """Everything that shapes a net: its input and the options the model reads, nothing else.
    Saved in every weights file (as a dict), which a net is rebuilt from."""
    image_shape: tuple  # (C, H, W)
    encnblayers: int  # conv blocks of the encoder
    encnbfilters: int  # filters of the first block (doubled at each block)
    enchidd_repr_size: int  # size of z
    clust: int  # DNs (experts)
    clnblayers: int  # dense layers of the CN
    clhidd_repr_size: int
    denblayers: int  # dense layers of each DN
    dehidd_repr_size: int
    decision_clu: str  # the gate: DE, FS, FD, SD or GSF
    temperature: float  # GSF's
    cn_binary_grad: bool  # whether the binary loss reaches the CN through the gate
    # Heads that only the research terms read (0: absent; weights files written before
    # they existed load without them).
    proj_size: int = 0  # output of the projection head on z that --contrastive reads
    overclust: int = 0  # outputs of the auxiliary over-clustering head that --overclust_iic reads
    cn_heads: int = 1  # CN heads, each with its own DNs (--cn_heads; SCAN's heads)
    enc_block: str = "conv5"  # the encoder's conv block (ENCODER_BLOCKS)
    rotation_pred: float = 0.0  # > 0: the RotNet head exists (its weight is the loss's)
    rotation_reads: str = "z"  # what the RotNet head reads: z or the last conv block's maps
    heads_own_z: bool = False  # each CN head has its own dense layer to z (--heads_own_z)

    @classmethod
    def from_options(cls, opts, image_shape):
        return cls(tuple(image_shape), *(getattr(opts, f.name) for f in fields(cls)[1:]))


def uniform_init(tensors, fan_in, generators):
    """PyTorch's default Linear/Conv init, drawn net by net from each net's own generator,
    so a net's initial weights do not depend on the nets stacked beside it."""
    bound = 1 / math.sqrt(fan_in)
    with torch.no_grad():
        for net, generator in enumerate(generators):
            for tensor in tensors:
                tensor[net].uniform_(-bound, bound, generator=generator)


class StackedLinear(nn.Module):
    """One linear layer per net: (N, B, n_in) -> (N, B, n_out)."""

    def __init__(self, n_nets, n_in, n_out):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_nets, n_in, n_out))
        self.bias = nn.Parameter(torch.empty(n_nets, 1, n_out))

    def reset_parameters(self, generators):
        uniform_init([self.weight, self.bias], self.weight.shape[1], generators)

    def forward(self, x):
        return torch.baddbmm(self.bias, x, self.weight)


class StackedMLP(nn.Module):
    """Dense layers with ReLU between them (none after the last): sizes [in, ..., out]."""

    def __init__(self, n_nets, sizes):
        super().__init__()
        self.layers = nn.ModuleList(StackedLinear(n_nets, a, b) for a, b in zip(sizes, sizes[1:]))

    def reset_parameters(self, generators):
        for layer in self.layers:
            layer.reset_parameters(generators)

    def layer_outputs(self, x):
        """Each layer's output, before its ReLU (the last one is the MLP's output)."""
        outputs = []
        for layer in self.layers:
            x = layer(F.relu(x) if outputs else x)
            outputs.append(x)
        return outputs

    def forward(self, x):
        return self.layer_outputs(x)[-1]


# The encoder's conv blocks: (kernel size, padding, batch norm). conv5 is the published
# block; conv3bn keeps the map's size through the conv, so three blocks fit a 28x28 image.
ENCODER_BLOCKS = {"conv5": (5, 0, False), "conv3bn": (3, 1, True)}


class Encoder(nn.Module):
    """`n_blocks` of (conv, [batch norm], 2x2 max-pool, ReLU), then a dense layer to z, ReLU.

    The nets' channels sit side by side in one grouped convolution: (B, N*C, H, W); the
    batch norm of conv3bn normalises each channel of each net on its own, so the nets of a
    --seeds run stay independent (its weights and running statistics are held (N, C))."""

    def __init__(self, n_nets, config):
        super().__init__()
        image_shape, n_blocks, n_filters = config.image_shape, config.encnblayers, config.encnbfilters
        self.kernel, self.padding, batch_norm = ENCODER_BLOCKS[config.enc_block]
        channels, height, width = image_shape
        self.n_nets = n_nets
        self.conv_weights, self.conv_biases = nn.ParameterList(), nn.ParameterList()
        self.bn_weights, self.bn_biases = nn.ParameterList(), nn.ParameterList()
        shrink = self.kernel - 1 - 2 * self.padding
        for block in range(n_blocks):
            out = n_filters * 2 ** block
            self.conv_weights.append(nn.Parameter(torch.empty(n_nets, out, channels, self.kernel, self.kernel)))
            self.conv_biases.append(nn.Parameter(torch.empty(n_nets, out)))
            if batch_norm:
                self.bn_weights.append(nn.Parameter(torch.empty(n_nets, out)))
                self.bn_biases.append(nn.Parameter(torch.empty(n_nets, out)))
                self.register_buffer(f"bn_mean{block}", torch.zeros(n_nets, out))
                self.register_buffer(f"bn_var{block}", torch.ones(n_nets, out))
            channels, height, width = out, (height - shrink) // 2, (width - shrink) // 2
            if height < 1 or width < 1:
                raise ValueError(f"{n_blocks} conv blocks shrink a {image_shape[1]}x{image_shape[2]} "
                                 "image to nothing")
        self.feature_shape = (channels, height, width)
        n_in = channels * height * width
        # --heads_own_z: one dense layer per CN head, so each head reads a z of its own.
        self.dense = Experts(n_nets, config.cn_heads, [n_in, config.enchidd_repr_size]) if config.heads_own_z \
            else StackedLinear(n_nets, n_in, config.enchidd_repr_size)

    def reset_parameters(self, generators):
        for weight, bias in zip(self.conv_weights, self.conv_biases):
            uniform_init([weight, bias], weight[0, 0].numel(), generators)
        with torch.no_grad():
            for block, (weight, bias) in enumerate(zip(self.bn_weights, self.bn_biases)):
                weight.fill_(1), bias.zero_()
                getattr(self, f"bn_mean{block}").zero_(), getattr(self, f"bn_var{block}").fill_(1)
        self.dense.reset_parameters(generators)

    def normalise(self, x, block):
        """Batch norm of block `block` over the (B, N*C, H, W) maps; in training it updates the
        running statistics (views of the (N, C) buffers) that evaluation reads."""
        if not self.bn_weights:
            return x
        mean, var = getattr(self, f"bn_mean{block}"), getattr(self, f"bn_var{block}")
        return F.batch_norm(x, mean.view(-1), var.view(-1), self.bn_weights[block].flatten(),
                            self.bn_biases[block].flatten(), self.training, 0.1, 1e-5)

    def feature_maps(self, x):
        """(N, B, C, H, W) images -> list of each block's activations, (B, N*C', H', W').

        The maps are in speed.FEATURE_MAP_FORMAT in memory (channels-last: the CPU's grouped
        convolution and max-pooling run several times faster that way than on NCHW)."""
        n_nets, batch, _, height, width = x.shape
        x = x.permute(1, 3, 4, 0, 2).reshape(batch, height, width, -1).permute(0, 3, 1, 2)
        maps = []
        for block, (weight, bias) in enumerate(zip(self.conv_weights, self.conv_biases)):
            x = F.conv2d(x, weight.flatten(0, 1), bias.flatten(), padding=self.padding, groups=n_nets)
            x = self.normalise(x.contiguous(memory_format=FEATURE_MAP_FORMAT), block)
            # Pooling before the ReLU (the same values: ReLU is monotonic) does the ReLU
            # and its backward on a quarter of the elements.
            x = F.relu(F.max_pool2d(x.contiguous(memory_format=FEATURE_MAP_FORMAT), 2))
            maps.append(x)
        return maps

    def flat_features(self, x):
        """(N, B, C, H, W) images -> (N, B, C' H' W') the last block's maps, flattened per net."""
        return self.feature_maps(x)[-1].reshape(x.shape[1], self.n_nets, -1).transpose(0, 1)

    def forward(self, x):
        """(N, B, C, H, W) images -> (N, B, repr_size) representations z; with --heads_own_z
        every head's, (N, B, H, repr_size)."""
        return self.representation_of(self.flat_features(x))

    def representation_of(self, features):
        """flat_features' output -> z: the dense layer, ReLU."""
        return F.relu(self.dense(features))


def expert_sizes(config):
    """Layer sizes of one DN: z, then denblayers - 1 hidden layers, then the 2 logits."""
    return [config.enchidd_repr_size] + [config.dehidd_repr_size] * (config.denblayers - 1) + [2]


class Experts(nn.Module):
    """`n_experts` MLPs per net reading the same z: (N, B, n_in) -> (N, B, K, n_out)."""

    def __init__(self, n_nets, n_experts, sizes):
        super().__init__()
        self.n_experts = n_experts
        self.weights = nn.ParameterList(nn.Parameter(torch.empty(n_nets, n_experts, a, b))
                                        for a, b in zip(sizes, sizes[1:]))
        self.biases = nn.ParameterList(nn.Parameter(torch.empty(n_nets, n_experts, 1, b)) for b in sizes[1:])

    def reset_parameters(self, generators):
        for weight, bias in zip(self.weights, self.biases):
            uniform_init([weight, bias], weight.shape[2], generators)

    def layer_outputs(self, z):
        """Each layer's output (N, B, K, n_out) of every expert, before its ReLU. z is (N, B, n_in),
        read by every expert, or (N, B, K, n_in), an input per expert."""
        n_nets, batch = z.shape[:2]
        weight, bias = self.weights[0], self.biases[0]
        if z.dim() == 4:
            out = torch.einsum("nbki,nkio->nbko", z, weight)
        else:  # every expert reads z, so one matmul with the experts side by side
            out = torch.bmm(z, weight.permute(0, 2, 1, 3).flatten(2)).view(n_nets, batch, self.n_experts, -1)
        outputs = [out + bias.view(n_nets, 1, self.n_experts, -1)]
        for weight, bias in zip(self.weights[1:], self.biases[1:]):
            hidden = F.relu(outputs[-1]).permute(0, 2, 1, 3).flatten(0, 1)  # (N*K, B, h)
            out = torch.baddbmm(bias.flatten(0, 1), hidden, weight.flatten(0, 1))
            outputs.append(out.view(n_nets, self.n_experts, batch, -1).permute(0, 2, 1, 3))
        return outputs

    def forward(self, z):
        return self.layer_outputs(z)[-1]


def gate(probs, logits, mode, training, noise=None, temperature=1.0):
    """The CN's decision h (N, B, K) from its distribution p: one-hot, straight-through.

    DE samples in training and takes the argmax in eval; FS samples always; FD takes the
    argmax always; SD is soft (h = p); GSF is the straight-through Gumbel-softmax in
    training and the argmax in eval. `noise` holds uniforms in [0, 1), (N, B, K): the
    randomness is drawn by the caller from each net's own generator."""
    if mode == "SD":
        return probs
    if mode == "GSF" and training:
        gumbel = -torch.log(-torch.log(noise.clamp(1e-10, 1 - 1e-7)))
        soft = F.softmax((logits + gumbel) / temperature, dim=-1)
        choice = soft.argmax(dim=-1)
        probs = soft
    elif mode == "FS" or (mode == "DE" and training):
        # Inverse-CDF sampling: the first expert whose cumulated probability exceeds u.
        below = probs.detach().cumsum(dim=-1) < noise[..., :1]
        choice = below.sum(dim=-1).clamp_max(probs.shape[-1] - 1)
    else:
        choice = probs.argmax(dim=-1)
    # scatter, not F.one_hot: one_hot checks its input's range, a host sync on every step;
    # not the in-place scatter_ either, which torch.vmap runs net by net (no batching rule).
    hard = torch.zeros_like(probs).scatter(-1, choice.unsqueeze(-1), 1.0)
    return hard + probs - probs.detach()  # forward: hard; backward: as if h were p


def scaled_gradient(values, share):
    """`values` unchanged, their gradient scaled by `share` on the way back (0: detached)."""
    if share == 0:
        return values.detach()
    return values.detach() + share * (values - values.detach())


def needs_noise(mode, training):
    return mode == "FS" or (training and mode in ("DE", "GSF"))


@dataclass
class GateOutputs:
    """Everything one ClustNet forward pass computes, for the loss terms that read the gate."""
    log_probs: torch.Tensor  # (N, B, 2) the output: log_softmax(sum_k h_k DN_k(z))
    probs: torch.Tensor  # (N, B, K) the CN's distribution p
    logits: torch.Tensor  # (N, B, K) the CN's logits
    hard: torch.Tensor  # (N, B, K) the gate's decision h (straight-through)
    experts: torch.Tensor  # (N, B, K, 2) every DN's logits
    z: torch.Tensor  # (N, B, repr_size) the encoder's representation
    projection: Optional[torch.Tensor] = None  # (N, B, proj_size) the projection head's output
    over_probs: Optional[torch.Tensor] = None  # (N, B, overclust) the over-clustering head's p
    neighbour_probs: Optional[torch.Tensor] = None  # (N, B, K) the CN's p on each image's mined neighbour
    teacher_probs: Optional[torch.Tensor] = None  # (N, B, K) the moving average's p on the same images
    cut_probs: Optional[torch.Tensor] = None  # (N, B, K) p with the encoder's gradient cut (at z or the maps)


def fold_heads(values):
    """(N, B, H, ...) -> (N * H, B, ...): each head of each net as a net of its own, net-major."""
    return values.transpose(1, 2).flatten(0, 1)


def unfold_heads(values, n_heads):
    """fold_heads' inverse, the head axis after the batch's: (N * H, B, ...) -> (N, B, H, ...)."""
    return values.unflatten(0, (-1, n_heads)).transpose(1, 2)


def select_heads(values, heads):
    """(N, B, H, ...) each head's outputs, (N,) a head per net -> (N, B, ...) that head's."""
    return values[torch.arange(len(heads), device=values.device), :, heads.to(values.device)]


class ClustNet(nn.Module):
    """Encoder -> z; CN(z) -> p -> gate h; output log_softmax(sum_k h_k DN_k(z)).

    With --cn_heads H > 1 (SCAN's heads) each net has H CNs, each with its own K DNs, all on
    the same z: in training every head's outputs come folded into the net axis (N * H nets:
    each head trains as a net of its own, the encoder shared), in evaluation only the head
    in `selected_head` (per net: the one with the smallest training loss, training.py)."""

    def __init__(self, n_nets, config):
        super().__init__()
        self.n_nets, self.config = n_nets, config
        self.encoder = Encoder(n_nets, config)
        cn_sizes = [config.enchidd_repr_size] + [config.clhidd_repr_size] * (config.clnblayers - 1) + [config.clust]
        self.cn = StackedMLP(n_nets, cn_sizes) if config.cn_heads == 1 else Experts(n_nets, config.cn_heads, cn_sizes)
        self.dn = Experts(n_nets, config.clust * config.cn_heads, expert_sizes(config))
        if config.cn_heads > 1:
            self.register_buffer("selected_head", torch.zeros(n_nets, dtype=torch.long))
        z_size = config.enchidd_repr_size
        # SimCLR's projection head (one hidden layer) and IIC's auxiliary over-clustering head:
        # they learn the representation and are read by no prediction.
        self.projection = StackedMLP(n_nets, [z_size, z_size, config.proj_size]) if config.proj_size else None
        self.over_head = StackedMLP(n_nets, [z_size, config.clhidd_repr_size, config.overclust]) \
            if config.overclust else None
        # RotNet's head: which quarter-turn an image was given (read by losses.rotation_loss only),
        # from z or from the conv maps before the dense layer (then z is left to the gate's terms).
        rotation_in = math.prod(self.encoder.feature_shape) if config.rotation_reads == "maps" else z_size
        self.rotation_head = StackedMLP(n_nets, [rotation_in, z_size, 4]) if config.rotation_pred else None

    def heads(self):
        return [head for head in (self.projection, self.over_head, self.rotation_head) if head is not None]

    def reset_parameters(self, generators):
        # The heads last: without them a net's initial weights are what they were before.
        for module in (self.encoder, self.cn, self.dn, *self.heads()):
            module.reset_parameters(generators)

    def cn_parameters(self):
        return list(self.cn.parameters())

    def encoder_dn_parameters(self):
        """Everything but the CN: the encoder, the DNs and the representation heads."""
        return [p for module in (self.encoder, self.dn, *self.heads()) for p in module.parameters()]

    def head_outputs(self, z):
        """The representation heads' outputs on z: (projection, over-clustering p), None where absent."""
        projection = None if self.projection is None else self.projection(z)
        over_probs = None if self.over_head is None else F.softmax(self.over_head(z), dim=-1)
        return projection, over_probs

    def rotation_logits(self, x):
        """(N, B, C, H, W) images -> (N, B, 4) the RotNet head's logits, read from z or, with
        --rotation_reads maps, from the last conv block's maps."""
        reads_maps = self.config.rotation_reads == "maps"
        return self.rotation_head(self.encoder.flat_features(x) if reads_maps else self.representation(x))

    def representation(self, x):
        """(N, B, C, H, W) images -> (N, B, repr_size) the z the CN reads: with --heads_own_z
        the selected head's (what the mined neighbours, the RotNet head and the analyses read)."""
        return self.selected_z(self.encoder(x))

    def selected_z(self, z):
        """The encoder's z -> the selected head's with --heads_own_z (N, B, H, R -> N, B, R), else z."""
        return select_heads(z, self.selected_head) if self.config.heads_own_z else z

    def folds_heads(self):
        """Whether the outputs come with every CN head folded into the net axis (N * H, ...)."""
        return self.training and self.config.cn_heads > 1

    def dn_inputs(self, z):
        """What the DNs read: z, or with --heads_own_z (z (N, B, H, R)) each head's z repeated
        for each of its DNs, (N, B, H * K, R)."""
        return z.repeat_interleave(self.config.clust, 2) if self.config.heads_own_z else z

    def cn_logits(self, z):
        """z as gate_inputs takes it -> the CN's logits (., B, K) as the gate reads them: every
        head's folded into the net axis in training, the selected head's otherwise."""
        logits = self.cn(z)
        if self.config.cn_heads == 1:
            return logits
        return fold_heads(logits) if self.training else select_heads(logits, self.selected_head)

    def gate_inputs(self, z):
        """(N, B, R) z (every head's, (N, B, H, R), with --heads_own_z) -> z, the CN's logits
        (., B, K) and the DNs' logits (., B, K, 2) as the gate reads them: every head's folded
        into the net axis in training (N * H, ...; a shared z repeated for each head), the
        selected head's otherwise."""
        logits, experts = self.cn_logits(z), self.dn(self.dn_inputs(z))
        n_heads = self.config.cn_heads
        if n_heads == 1:
            return z, logits, experts
        n_nets, batch = z.shape[:2]
        experts = experts.view(n_nets, batch, n_heads, self.config.clust, -1)
        if self.training:
            gate_z = fold_heads(z) if self.config.heads_own_z else z.repeat_interleave(n_heads, 0)
            return gate_z, logits, fold_heads(experts)
        return self.selected_z(z), logits, select_heads(experts, self.selected_head)

    def head_outputs_as_gate(self, z):
        """head_outputs, repeated for each CN head when the outputs fold them (gate_inputs)."""
        outputs = self.head_outputs(z)
        if not self.folds_heads():
            return outputs
        return tuple(None if out is None else out.repeat_interleave(self.config.cn_heads, 0) for out in outputs)

    def outputs(self, x, noise=None, cut=None, encoder_share=0.0):
        """(N, B, C, H, W) images -> GateOutputs (each CN head a net of its own in training,
        gate_inputs; `noise` then holds the uniforms of every head, (N, B, H * K)). `cut`: also
        p with the encoder's gradient cut (cut_probs; its value is p's): at z ('z', z's gradient
        scaled by `encoder_share`; 0: z detached, a p whose gradient reaches the CN only) or at
        the conv maps ('maps': z recomputed from the maps detached, so the gradient reaches the
        CN and the dense layer to z, not the conv blocks)."""
        features = self.encoder.flat_features(x)
        z = self.encoder.representation_of(features)
        gate_z, logits, experts = self.gate_inputs(z)
        if noise is not None and self.folds_heads():
            noise = fold_heads(noise.unflatten(-1, (self.config.cn_heads, -1)))
        probs = F.softmax(logits, dim=-1)
        h = gate(probs, logits, self.config.decision_clu, self.training, noise, self.config.temperature)
        if not self.config.cn_binary_grad:
            h = h.detach()
        mixed = (h.unsqueeze(-1) * experts).sum(dim=2)
        heads = self.head_outputs_as_gate(z) if self.training else (None, None)  # only training terms read them
        cut_probs = None
        if cut is not None:
            cut_z = scaled_gradient(z, encoder_share) if cut == "z" else self.encoder.representation_of(features.detach())
            cut_probs = F.softmax(self.cn_logits(cut_z), dim=-1)
        return GateOutputs(F.log_softmax(mixed, dim=-1), probs, logits, h, experts, gate_z, *heads,
                           cut_probs=cut_probs)

    def view_outputs(self, x):
        """(N, B, C, H, W) images -> GateOutputs with what the terms read of a second view:
        the CN's p and logits, z and the heads' outputs (no gate, no DNs)."""
        z = self.encoder(x)
        gate_z, logits, _ = self.gate_inputs(z)
        return GateOutputs(None, F.softmax(logits, dim=-1), logits, None, None, gate_z, *self.head_outputs_as_gate(z))

    def dn_layer_outputs(self, z):
        """Each DN layer's output (N, B, K, n_out), before its ReLU: the selected head's DNs
        (z as the encoder gives it: every head's with --heads_own_z)."""
        outputs = self.dn.layer_outputs(self.dn_inputs(z))
        if self.config.cn_heads == 1:
            return outputs
        return [select_heads(out.unflatten(2, (self.config.cn_heads, -1)), self.selected_head) for out in outputs]

    def hidden_activations(self, x):
        """{layer name: activations} of every ReLU on (N, B, C, H, W) images: the encoder's
        conv blocks and z, the CN's and the DNs' hidden layers (for the analyses)."""
        activations = {f"encoder conv {i + 1}": maps for i, maps in enumerate(self.encoder.feature_maps(x))}
        z = self.encoder(x)
        activations["encoder z"] = self.selected_z(z)
        for i, output in enumerate(self.cn.layer_outputs(z)[:-1]):
            activations[f"CN hidden {i + 1}"] = F.relu(output)  # with --cn_heads: every head's
        for i, output in enumerate(self.dn_layer_outputs(z)[:-1]):
            activations[f"DN hidden {i + 1}"] = F.relu(output)
        return activations

    def forward(self, x, noise=None):
        """(N, B, C, H, W) images -> log-probabilities (N, B, 2) and the CN's p (N, B, K)."""
        out = self.outputs(x, noise)
        return out.log_probs, out.probs


def net_state(model, net):
    """The state dict of net number `net` of a stacked model, as a 1-net model's."""
    return {name: tensor[net:net + 1].detach().clone() for name, tensor in model.state_dict().items()}


def net_optimiser_state(optimiser, net):
    """The state dict of an optimiser over stacked parameters, as a 1-net model's optimiser
    would hold it: every state tensor shaped like its parameter (a momentum, Adam's moments)
    cut to net number `net`; the others (Adam's step count) kept whole."""
    state = optimiser.state_dict()
    params = [param for group in optimiser.param_groups for param in group["params"]]

    def cut(value, param):
        return value[net:net + 1].clone() if torch.is_tensor(value) and value.shape == param.shape else value
    return {"state": {key: {name: cut(value, params[key]) for name, value in entry.items()}
                      for key, entry in state["state"].items()},
            "param_groups": state["param_groups"]}


def load_net_states(model, states):
    """Put one 1-net state dict (net_state's) back into each net of a stacked model, in order."""
    model.load_state_dict({name: torch.cat([state[name] for state in states]) for name in model.state_dict()})


def load_net_optimiser_states(optimiser, states):
    """The inverse of net_optimiser_state: one state dict per net, in order, put back into an
    optimiser over stacked parameters. The state tensors shaped like a net's cut of their
    parameter are stacked again; the others (Adam's step count) are the same for every net
    continued from the same epoch, and taken from the first."""
    params = [param for group in optimiser.param_groups for param in group["params"]]

    def join(key, name):
        values = [state["state"][key][name] for state in states]
        if torch.is_tensor(values[0]) and values[0].shape == (1, *params[key].shape[1:]):
            return torch.cat(values)
        return values[0]
    first = states[0]
    optimiser.load_state_dict({"state": {key: {name: join(key, name) for name in entry}
                                         for key, entry in first["state"].items()},
                               "param_groups": first["param_groups"]})

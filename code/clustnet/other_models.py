"""The nets of the other modes, stacked like ClustNet (N nets on a leading axis):
the one-expert baseline (`--pretrain True`) and the convolutional autoencoder
(`--pretrain_cae True`). Both keep ClustNet's layer names (`encoder.*`, `dn.*`) so their
weights files can initialise a ClustNet (`--init_enc`, `--init`).
"""

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ClustNetError
from .model import Encoder, Experts, StackedLinear, expert_sizes, uniform_init


class DetectNet(nn.Module):
    """The encoder and a single DN: ClustNet with one expert and no gate."""

    def __init__(self, n_nets, config):
        super().__init__()
        self.n_nets, self.config = n_nets, config
        self.encoder = Encoder(n_nets, config)
        self.dn = Experts(n_nets, 1, expert_sizes(config))

    def reset_parameters(self, generators):
        self.encoder.reset_parameters(generators)
        self.dn.reset_parameters(generators)

    def forward(self, x):
        """(N, B, C, H, W) images -> log-probabilities (N, B, 2)."""
        return F.log_softmax(self.dn(self.encoder(x))[:, :, 0], dim=-1)


class Decoder(nn.Module):
    """The encoder mirrored: a dense layer back to the last feature maps, then for each conv
    block in reverse, an upsampling to the size before its pooling and a 5x5 transposed
    convolution back to its input size; ReLU between layers, none on the output image."""

    def __init__(self, encoder, image_shape, repr_size):
        super().__init__()
        if encoder.bn_weights:
            raise ClustNetError("--pretrain_cae mirrors the published encoder only: use --enc_block conv5")
        self.n_nets = n_nets = encoder.n_nets
        self.feature_shape = encoder.feature_shape
        self.dense = StackedLinear(n_nets, repr_size, int(torch.Size(encoder.feature_shape).numel()))
        height, width = image_shape[1:]
        self.conv_sizes = []
        for _ in encoder.conv_weights:
            self.conv_sizes.append((height - 4, width - 4))
            height, width = (height - 4) // 2, (width - 4) // 2
        self.conv_sizes.reverse()
        # A transposed conv weight is (in, out, 5, 5): in = the block's output channels.
        self.deconv_weights = nn.ParameterList(
            nn.Parameter(torch.empty(n_nets, w.shape[1], w.shape[2], 5, 5)) for w in reversed(encoder.conv_weights))
        self.deconv_biases = nn.ParameterList(
            nn.Parameter(torch.empty(n_nets, w.shape[2])) for w in reversed(encoder.conv_weights))

    def reset_parameters(self, generators):
        self.dense.reset_parameters(generators)
        for weight, bias in zip(self.deconv_weights, self.deconv_biases):
            uniform_init([weight, bias], weight[0, 0].numel(), generators)

    def forward(self, z):
        """(N, B, repr_size) -> (N, B, C, H, W) images."""
        n_nets, batch = z.shape[:2]
        x = F.relu(self.dense(z)).transpose(0, 1).reshape(batch, n_nets * self.feature_shape[0],
                                                           *self.feature_shape[1:])
        last = len(self.deconv_weights) - 1
        for i, (weight, bias, size) in enumerate(zip(self.deconv_weights, self.deconv_biases, self.conv_sizes)):
            x = F.interpolate(x, size=size, mode="nearest")
            x = F.conv_transpose2d(x, weight.flatten(0, 1), bias.flatten(), groups=n_nets)
            if i < last:
                x = F.relu(x)
        return x.reshape(batch, n_nets, -1, *x.shape[2:]).transpose(0, 1)


class ConvAutoencoder(nn.Module):
    """ClustNet's encoder and a mirrored decoder, trained to reconstruct the image (MSE)."""

    def __init__(self, n_nets, config):
        super().__init__()
        self.n_nets, self.config = n_nets, config
        self.encoder = Encoder(n_nets, config)
        self.decoder = Decoder(self.encoder, config.image_shape, config.enchidd_repr_size)

    def reset_parameters(self, generators):
        self.encoder.reset_parameters(generators)
        self.decoder.reset_parameters(generators)

    def forward(self, x):
        return self.decoder(self.encoder(x))

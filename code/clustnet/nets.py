"""Building the nets of a run: the table of models, which one a command line asks for, and
their weights: drawn from each net's own generator, then the --init* files; and a net
rebuilt from its weights file for the analyses."""

import dataclasses

import torch

from .checkpoint import checkpoint_options, copy_layers, evaluated_state, load_checkpoint, load_checkpoint_of
from .errors import ClustNetError
from .layout import CAE, CLUSTNET, DETECTNET, KINDS
from .model import ClustNet, Encoder, ModelConfig
from .other_models import ConvAutoencoder, DetectNet

MODELS = {CLUSTNET: ClustNet, DETECTNET: DetectNet, CAE: ConvAutoencoder}


def run_kind(opts):
    """Which net the options train: the autoencoder, the one-expert baseline or ClustNet."""
    return CAE if opts.pretrain_cae else DETECTNET if opts.pretrain else CLUSTNET


def build_model(kind, n_nets, config):
    return MODELS[kind](n_nets, config)


def build_nets(kind, image_shape, opts, generators, initialise_from_files=True):
    """len(generators) nets of `kind`, stacked, their weights drawn from each net's generator,
    then (unless the run resumes a net) copied from the --init* files."""
    try:
        model = build_model(kind, len(generators), ModelConfig.from_options(opts, image_shape))
    except ValueError as error:
        raise ClustNetError(f"--encnblayers {opts.encnblayers} --enc_block {opts.enc_block}: {error}") from None
    model.reset_parameters(generators)
    if initialise_from_files:
        initialise(model, kind, opts, generators)
    return model


def add_relative_noise(module, scale, generators):
    """Each net's copy of each tensor += scale x the tensor's mean |value| x N(0, 1) noise,
    drawn from the net's own generator, so that copies of one pretrained DN differ."""
    if not scale:
        return
    with torch.no_grad():
        for tensor in module.parameters():
            for net, generator in enumerate(generators):
                size = tensor[net].abs().mean()
                noise = torch.randn(tensor[net].shape, generator=generator)
                tensor[net] += scale * size * noise.to(tensor.device)


def initialise(model, kind, opts, generators):
    """Weights from the --init_enc, --init (a pretrained DN) and --init_clu files.

    A DN only makes sense on the representation it was trained on, so --init also copies the
    DN file's encoder, which --init_enc, when given, replaces."""
    if opts.init:
        if kind != CLUSTNET:
            raise ClustNetError(f"--init {opts.init}: a {kind} run can only resume a {kind} weights file")
        state = evaluated_state(load_checkpoint_of(opts.init, (DETECTNET,), "--init (other than a resume)"))
        copy_layers(model, state, opts.init, "encoder.")
        copy_layers(model, state, opts.init, "dn.", shared_axes=2)
        add_relative_noise(model.dn, opts.noise_init, generators)
    if opts.init_enc:
        state = evaluated_state(load_checkpoint_of(opts.init_enc, KINDS, "--init_enc"))
        copy_layers(model, state, opts.init_enc, "encoder.")
    if opts.init_clu:
        if kind != CLUSTNET:
            raise ClustNetError(f"--init_clu: a {kind} net has no clustering network")
        state = evaluated_state(load_checkpoint_of(opts.init_clu, (CLUSTNET,), "--init_clu"))
        copy_layers(model, state, opts.init_clu, "cn.")
        if model.config.cn_heads > 1:  # and which head is the CN
            copy_layers(model, state, opts.init_clu, "selected_head")


def saved_config(checkpoint, opts):
    """The ModelConfig a weights file was written with (files from before it was saved: from
    the file's options and image shape)."""
    if "config" in checkpoint:
        return ModelConfig(**checkpoint["config"])
    return ModelConfig.from_options(opts, checkpoint["image_shape"])


def load_encoder(path):
    """The encoder of any weights file holding one (ClustNet, one-DN net, CAE: all store it
    under `encoder.`), in eval mode, and the file's options."""
    checkpoint = load_checkpoint(path)
    kind = checkpoint.get("kind")
    state = {key.removeprefix("encoder."): value for key, value in evaluated_state(checkpoint).items()
             if key.startswith("encoder.")}
    if kind not in KINDS or not state or "image_shape" not in checkpoint:
        raise ClustNetError(f"{path} holds no encoder (a {kind} weights file)")
    opts = checkpoint_options(checkpoint, path)
    config = saved_config(checkpoint, opts)
    if config.heads_own_z:  # the selected head's dense layer makes the encoder of the net's z
        state = one_head_encoder_state(state, int(evaluated_state(checkpoint)["selected_head"][0]))
        config = dataclasses.replace(config, heads_own_z=False)
    encoder = Encoder(1, config)
    encoder.load_state_dict(state)
    return encoder.eval(), opts


def one_head_encoder_state(state, head):
    """A --heads_own_z encoder's state dict (its keys without `encoder.`) -> that of the plain
    encoder of head `head`'s z: the conv blocks and that head's dense layer."""
    state = dict(state)
    state["dense.weight"] = state.pop("dense.weights.0")[:, head]
    state["dense.bias"] = state.pop("dense.biases.0")[:, head]
    return state


def load_clustnet(path):
    """A one-net ClustNet from a ClustNet weights file, in eval mode, and its options."""
    checkpoint = load_checkpoint_of(path, (CLUSTNET,), "this")
    opts = checkpoint_options(checkpoint, path)
    model = build_model(CLUSTNET, 1, saved_config(checkpoint, opts))
    copy_layers(model, evaluated_state(checkpoint), path, "")
    return model.eval(), opts

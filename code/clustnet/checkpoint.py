"""Weights files: what a saved net holds, and loading one back with clear errors."""

import argparse
import io
from dataclasses import dataclass

import torch

from . import layout
from .other_models import build_model
from .errors import ClustNetError
from .model import Encoder, net_state
from .options import format_value, options_from_ini_text, options_ini


def slice_optimiser_state(state, net, n_nets):
    """The optimiser state of net `net`: every stacked tensor cut to its slice."""
    def cut(value):
        if torch.is_tensor(value) and value.dim() > 0 and value.shape[0] == n_nets:
            return value[net:net + 1].clone()
        return value
    return {"state": {key: {name: cut(value) for name, value in entry.items()}
                      for key, entry in state["state"].items()},
            "param_groups": state["param_groups"]}


def weights_bytes(kind, model, image_shape, optimisers, generators, net, epoch, ini_text):
    """The content of net `net`'s weights file, serialised now: everything an exact resume
    needs (weights, optimiser and RNG state, epoch, options), a snapshot that later training
    steps cannot change."""
    checkpoint = {"kind": kind, "epoch": epoch, "options": ini_text, "image_shape": tuple(image_shape),
                  "model": net_state(model, net),
                  "optimisers": {name: slice_optimiser_state(opt.state_dict(), net, model.n_nets)
                                 for name, opt in optimisers.items()},
                  "generator": generators[net].get_state()}
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    return buffer.getvalue()


def write_bytes(path, content):
    """Write `content` to `path`, complete or absent; a failure is the system's OSError."""
    with layout.atomic_path(path) as tmp:
        tmp.write_bytes(content)


def save_weights(path, kind, model, image_shape, optimisers, generators, net, epoch, ini_text):
    """Write net `net`'s weights file (see weights_bytes) now."""
    write_bytes(path, weights_bytes(kind, model, image_shape, optimisers, generators, net, epoch, ini_text))


def load_checkpoint(path):
    """A weights file written by `save_weights`, or one clear error."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise ClustNetError(f"no weights file {path}") from None
    except Exception as error:  # torch.load raises many kinds on a file that is not one
        raise ClustNetError(f"{path} is not a ClustNet weights file ({type(error).__name__})") from None
    if not isinstance(checkpoint, dict) or "model" not in checkpoint or "options" not in checkpoint:
        raise ClustNetError(f"{path} is not a ClustNet weights file")
    return checkpoint


def checkpoint_options(checkpoint, path):
    """The options saved inside the weights file `path`, over the defaults, as a Namespace:
    read as a net's .ini file is (options.options_from_ini_text)."""
    return options_from_ini_text(checkpoint["options"], path, "weights file")


def load_checkpoint_of(path, kinds, purpose):
    """A weights file holding one of `kinds` of net, or one clear error."""
    checkpoint = load_checkpoint(path)
    if checkpoint.get("kind") not in kinds:
        raise ClustNetError(f"{path} holds a {checkpoint.get('kind')} net; {purpose} needs a "
                            f"{' or '.join(kinds)} weights file")
    return checkpoint


def load_encoder(path):
    """The encoder of any weights file holding one (ClustNet, one-DN net, CAE: all store it
    under `encoder.`), in eval mode, and the file's options."""
    checkpoint = load_checkpoint(path)
    kind = checkpoint.get("kind")
    state = {key.removeprefix("encoder."): value for key, value in checkpoint["model"].items()
             if key.startswith("encoder.")}
    if kind not in layout.KINDS or not state or "image_shape" not in checkpoint:
        raise ClustNetError(f"{path} holds no encoder (a {kind} weights file)")
    opts = checkpoint_options(checkpoint, path)
    encoder = Encoder(1, checkpoint["image_shape"], opts.encnblayers, opts.encnbfilters, opts.enchidd_repr_size)
    encoder.load_state_dict(state)
    return encoder.eval(), opts


def load_clustnet(path):
    """A one-net ClustNet from a ClustNet weights file, in eval mode, and its options."""
    checkpoint = load_checkpoint_of(path, (layout.CLUSTNET,), "this")
    opts = checkpoint_options(checkpoint, path)
    model = build_model(layout.CLUSTNET, 1, checkpoint["image_shape"], opts)
    copy_layers(model, checkpoint["model"], path, "")
    return model.eval(), opts


def copy_layers(model, state, path, prefix, shared_axes=1):
    """Copy the file's layers named `prefix`* into `model`, the same into each of its nets
    (and, with shared_axes=2, each of its experts), after checking that every layer matches.

    Files hold one net, so a layer's first `shared_axes` sizes are 1 there."""
    target = model.state_dict()
    names = [name for name in target if name.startswith(prefix)]
    for name in names:
        if name not in state:
            raise ClustNetError(f"{path} does not match the architecture of these options: "
                                f"it has no layer {name}")
        have, want = tuple(state[name].shape), tuple(target[name].shape)
        if have[shared_axes:] != want[shared_axes:] or any(size != 1 for size in have[:shared_axes]):
            raise ClustNetError(f"{path} does not match the architecture of these options: layer {name} "
                                f"is {have[shared_axes:]} in the file, {want[shared_axes:]} here")
    extra = [name for name in state if name.startswith(prefix) and name not in target]
    if extra:
        raise ClustNetError(f"{path} does not match the architecture of these options: "
                            f"its layer {extra[0]} has no place here")
    with torch.no_grad():
        for name in names:
            target[name].copy_(state[name].expand_as(target[name]))


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
        if kind != layout.CLUSTNET:
            raise ClustNetError(f"--init {opts.init}: a {kind} run can only resume a {kind} weights file")
        checkpoint = load_checkpoint_of(opts.init, (layout.DETECTNET,), "--init (other than a resume)")
        copy_layers(model, checkpoint["model"], opts.init, "encoder.")
        copy_layers(model, checkpoint["model"], opts.init, "dn.", shared_axes=2)
        add_relative_noise(model.dn, opts.noise_init, generators)
    if opts.init_enc:
        checkpoint = load_checkpoint_of(opts.init_enc, layout.KINDS, "--init_enc")
        copy_layers(model, checkpoint["model"], opts.init_enc, "encoder.")
    if opts.init_clu:
        if kind != layout.CLUSTNET:
            raise ClustNetError(f"--init_clu: a {kind} net has no clustering network")
        checkpoint = load_checkpoint_of(opts.init_clu, (layout.CLUSTNET,), "--init_clu")
        copy_layers(model, checkpoint["model"], opts.init_clu, "cn.")


# What a resume may change: how far to train and on what machine; the rest is the net's own.
RESUME_MAY_CHANGE = ("epochs", "no_cuda", "num_threads", "progress", "data_dir", "test_batch_size",
                     "overwrite")


@dataclass
class Resume:
    """A net to continue: its weights file, what it holds, and the options to continue with."""
    path: str
    checkpoint: dict
    kind: str
    opts: argparse.Namespace

    @property
    def epoch(self):
        return self.checkpoint["epoch"]


def resume_from(opts, given):
    """The Resume that --init asks for, or None when it names a pretrained DN to initialise a
    ClustNet's experts from. A ClustNet or CAE file is continued, a DN file too with
    --pretrain True. `given` names the options set on the command line, which must agree
    with the net's own except those of RESUME_MAY_CHANGE."""
    if not opts.init:
        return None
    checkpoint = load_checkpoint(opts.init)
    if checkpoint.get("kind") not in (layout.CLUSTNET, layout.CAE) and not (
            checkpoint.get("kind") == layout.DETECTNET and opts.pretrain):
        return None
    saved = checkpoint_options(checkpoint, opts.init)
    if opts.seeds:
        raise ClustNetError(f"--seeds with --init {opts.init}: a resume continues one net; resume each "
                            "net of a --seeds run with its own weights file")
    for name in ("init_enc", "init_clu"):
        if getattr(opts, name):
            raise ClustNetError(f"--{name} with --init {opts.init}: a resumed net keeps its own weights")
    for name in sorted(set(given) - set(RESUME_MAY_CHANGE) - {"init", "pretrain", "pretrain_cae"}):
        if getattr(opts, name) != getattr(saved, name):
            raise ClustNetError(
                f"--{name} {format_value(getattr(opts, name))}: the net in {opts.init} was trained with "
                f"{format_value(getattr(saved, name)) or 'none'}; a resume continues with the net's own "
                f"options, only --{', --'.join(RESUME_MAY_CHANGE)} may change")
    for name in RESUME_MAY_CHANGE:
        if name in given:
            setattr(saved, name, getattr(opts, name))
    if saved.epochs <= checkpoint["epoch"]:
        raise ClustNetError(f"--epochs {saved.epochs}: {opts.init} is already at epoch {checkpoint['epoch']}; "
                            "ask for more epochs to resume")
    return Resume(opts.init, checkpoint, checkpoint["kind"], saved)


def restore(resume, exp, model, optimisers, generators):
    """Put the resumed net's weights, optimiser and RNG state back, after checking that no
    later epoch would be written over; rewrite its .ini with the new number of epochs.
    Returns the .ini text."""
    opts = resume.opts
    later = [e for e in exp.epochs(opts.ind_id, resume.kind) if e > resume.epoch]
    if later and not opts.overwrite:
        raise ClustNetError(f"net {opts.ind_id} of experiment {exp.exp_id!r} already has epochs up to "
                            f"{later[-1]}: resume from {exp.weights_path(opts.ind_id, later[-1], resume.kind)}, "
                            f"or pass --overwrite True to redo the epochs after {resume.epoch}")
    copy_layers(model, resume.checkpoint["model"], resume.path, "")
    for name, optimiser in optimisers.items():
        optimiser.load_state_dict(resume.checkpoint["optimisers"][name])
    generators[0].set_state(resume.checkpoint["generator"])
    ini_text = options_ini(opts)
    with layout.atomic_path(exp.ini_path(opts.ind_id, resume.kind)) as tmp:
        tmp.write_text(ini_text)
    return ini_text


def resume_hints(exp, ind_ids, kind, epochs):
    """Where each net can resume from, as the files on disk say: its last weights file."""
    hints = []
    for ind_id in ind_ids:
        done = exp.epochs(ind_id, kind)
        hints.append(f"net {ind_id}: no epoch finished, nothing to resume" if not done else
                     f"net {ind_id} finished epoch {done[-1]}: resume with python3 code/trainVal.py "
                     f"--init {exp.weights_path(ind_id, done[-1], kind)} --epochs {epochs}")
    return "; ".join(hints)

"""Weights files: what a saved net holds, writing one, and reading one back with clear
errors (building a net from one: nets.py; continuing one: resume.py)."""

import dataclasses
import io

import torch

from . import layout
from .errors import ClustNetError
from .model import net_optimiser_state, net_state
from .options import options_from_ini_text


def weights_bytes(kind, model, optimisers, generators, net, epoch, ini_text):
    """The content of net `net`'s weights file, serialised now: everything an exact resume
    needs (weights, optimiser and RNG state, epoch, options), a snapshot that later training
    steps cannot change."""
    checkpoint = {"kind": kind, "epoch": epoch, "options": ini_text, "image_shape": model.config.image_shape,
                  "config": dataclasses.asdict(model.config),
                  "model": net_state(model, net),
                  "optimisers": {name: net_optimiser_state(opt, net) for name, opt in optimisers.items()},
                  "generator": generators[net].get_state()}
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    return buffer.getvalue()


def write_bytes(path, content):
    """Write `content` to `path`, complete or absent; a failure is the system's OSError."""
    with layout.atomic_path(path) as tmp:
        tmp.write_bytes(content)


def save_weights(path, kind, model, optimisers, generators, net, epoch, ini_text):
    """Write net `net`'s weights file (see weights_bytes) now."""
    write_bytes(path, weights_bytes(kind, model, optimisers, generators, net, epoch, ini_text))


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

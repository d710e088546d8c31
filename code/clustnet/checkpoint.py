"""Weights files: what a saved net holds, writing one, and reading one back with clear
errors (building a net from one: nets.py; continuing one: resume.py)."""

import dataclasses
import io
import zipfile
from pathlib import Path

import torch

from . import layout
from .errors import ClustNetError
from .model import net_optimiser_state, net_state
from .options import options_from_ini_text


def weights_bytes(kind, model, optimisers, generators, net, epoch, ini_text, run, averaged=None):
    """The content of net `net`'s weights file, serialised now: everything an exact resume
    needs (weights, optimiser and RNG state, epoch, options; with --weight_ema the moving
    average of the weights, `averaged`, and its number of steps), a snapshot that later
    training steps cannot change, and the net's run record (`run`: run_record.weights_entry)."""
    checkpoint = {"kind": kind, "epoch": epoch, "options": ini_text, "image_shape": model.config.image_shape,
                  "config": dataclasses.asdict(model.config),
                  "model": net_state(model, net),
                  "optimisers": {name: net_optimiser_state(opt, net) for name, opt in optimisers.items()},
                  "generator": generators[net].get_state(), "run": run}
    if averaged is not None:
        checkpoint.update(model_ema=net_state(averaged.module, net), ema_steps=int(averaged.n_averaged))
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    return buffer.getvalue()


def evaluated_state(checkpoint):
    """The weights a file's net was scored with: the moving average's with --weight_ema, else
    the trained ones (what the analyses and the --init* files read)."""
    return checkpoint.get("model_ema", checkpoint["model"])


def write_bytes(path, content):
    """Write `content` to `path`, complete or absent; a failure is the system's OSError."""
    with layout.atomic_path(path) as tmp:
        tmp.write_bytes(content)


def cut_short(path):
    """Whether the file `path` is empty, or starts as a zip archive (torch.save's format) but
    lacks the directory that ends one: a weights file whose end is missing."""
    try:
        with open(path, "rb") as file:
            start = file.read(4)
        return start == b"" or (start == b"PK\x03\x04" and not zipfile.is_zipfile(path))
    except OSError:
        return False


def resume_before(path):
    """How to resume the net of weights file `path` from the last earlier epoch whose file
    beside it loads, as a clause of an error message."""
    for earlier in layout.earlier_weights(path):
        try:
            checkpoint = torch.load(earlier, map_location="cpu", weights_only=False)
            epochs = checkpoint_options(checkpoint, earlier).epochs
            epoch = checkpoint["epoch"]
        except Exception:  # an unreadable earlier file: look further back
            continue
        return (f"; the last complete epoch of this net is {epoch}: resume with python3 code/trainVal.py "
                f"--init {earlier} --epochs {max(epochs, epoch + 1)} --overwrite True")
    return "; no complete earlier epoch of this net is beside it"


def load_checkpoint(path):
    """A weights file (weights_bytes's content), or one clear error; for a file cut short,
    with the command that resumes its net from the epoch before."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise ClustNetError(f"no weights file {path}") from None
    except Exception as error:  # torch.load raises many kinds on a file that is not one
        if cut_short(path):
            raise ClustNetError(f"weights file {path} is cut short (truncated: {Path(path).stat().st_size} bytes, "
                                f"its end is missing){resume_before(path)}") from None
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

"""Weights files: what a saved net holds, and loading one back with clear errors."""

import argparse

import torch

from . import layout
from .errors import ClustNetError
from .model import ClustNet, net_state
from .options import OPTIONS, parse_value


def slice_optimiser_state(state, net, n_nets):
    """The optimiser state of net `net`: every stacked tensor cut to its slice."""
    def cut(value):
        if torch.is_tensor(value) and value.dim() > 0 and value.shape[0] == n_nets:
            return value[net:net + 1].clone()
        return value
    return {"state": {key: {name: cut(value) for name, value in entry.items()}
                      for key, entry in state["state"].items()},
            "param_groups": state["param_groups"]}


def save_weights(path, kind, model, image_shape, optimisers, generators, net, epoch, ini_text):
    """Everything an exact resume needs: weights, optimiser and RNG state, epoch, options."""
    checkpoint = {"kind": kind, "epoch": epoch, "options": ini_text, "image_shape": tuple(image_shape),
                  "model": net_state(model, net),
                  "optimisers": {name: slice_optimiser_state(opt.state_dict(), net, model.n_nets)
                                 for name, opt in optimisers.items()},
                  "generator": generators[net].get_state()}
    with layout.atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)


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


def checkpoint_options(checkpoint):
    """The options saved inside a weights file, over the defaults, as a Namespace."""
    values = {option.name: option.default for option in OPTIONS}
    lines = [line.split("=", 1) for line in checkpoint["options"].splitlines()[1:] if "=" in line]
    by_name = {option.name: option for option in OPTIONS}
    for name, text in lines:
        name = name.strip()
        if name in by_name:
            values[name] = parse_value(by_name[name], text.strip(), "in the weights file")
    return argparse.Namespace(**values)


def load_clustnet(path):
    """A one-net ClustNet from a ClustNet weights file, in eval mode, and its options."""
    checkpoint = load_checkpoint(path)
    if checkpoint.get("kind") != layout.CLUSTNET:
        raise ClustNetError(f"{path} holds a {checkpoint.get('kind')} net, not a ClustNet")
    opts = checkpoint_options(checkpoint)
    model = ClustNet(1, checkpoint["image_shape"], opts)
    model.load_state_dict(checkpoint["model"])
    return model.eval(), opts

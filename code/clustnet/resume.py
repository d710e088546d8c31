"""Continuing a net from its weights file (--init on a ClustNet or autoencoder file, or a
one-expert file with --pretrain True): which options may change, putting the weights,
optimiser and random state back, and where each net of an interrupted run can resume."""

import argparse
from dataclasses import dataclass

from . import layout
from .checkpoint import checkpoint_options, copy_layers, load_checkpoint
from .errors import ClustNetError
from .options import format_value, options_ini


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

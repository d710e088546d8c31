"""Continuing nets: one net from its weights file (--init on a ClustNet or autoencoder file, or
a one-expert file with --pretrain True), or the nets a command line names (--resume True),
all together from the last epoch each of them finished. Which options may change, putting
the weights, optimiser and random state back, and where each net of an interrupted run can
resume."""

import argparse
from dataclasses import dataclass

from . import layout
from .checkpoint import checkpoint_options, load_checkpoint, load_checkpoint_of
from .errors import ClustNetError
from .model import load_net_optimiser_states, load_net_states
from .nets import run_kind
from .options import format_value, read_saved_options


# What a resume may change: how far to train and on what machine; the rest is the net's own.
RESUME_MAY_CHANGE = ("epochs", "no_cuda", "num_threads", "progress", "data_dir", "test_batch_size",
                     "overwrite", "resume")
PER_NET = ("seed", "seeds", "ind_id")  # what differs between the nets of one --seeds run


@dataclass
class Resume:
    """Nets to continue, all from the same epoch: their ids, weights files and what these
    hold (in the order of the stacked nets), and the options to continue with."""
    ind_ids: list
    paths: list
    checkpoints: list
    kind: str
    opts: argparse.Namespace

    @property
    def epoch(self):
        return self.checkpoints[0]["epoch"]

    @property
    def path(self):
        """The weights file continued from, or for several nets the first and the last."""
        return str(self.paths[0]) if len(self.paths) == 1 else f"{self.paths[0]} .. {self.paths[-1]}"

    @property
    def finished(self):
        return self.epoch >= self.opts.epochs


def check_same_options(opts, saved, names, source):
    """Refuse the first option of `names` whose value in `opts` differs from the net's own."""
    for name in sorted(names):
        if getattr(opts, name) != getattr(saved, name):
            raise ClustNetError(
                f"--{name} {format_value(getattr(opts, name))}: the net in {source} was trained with "
                f"{format_value(getattr(saved, name)) or 'none'}; a resume continues with the net's own "
                f"options, only --{', --'.join(RESUME_MAY_CHANGE)} may change")


def resume_from(opts, given):
    """The Resume that --resume True or --init asks for, or None for a fresh run (with --init:
    when it names a pretrained DN to initialise a ClustNet's experts from). `given` names
    the options set on the command line."""
    if opts.resume:
        return resume_nets(opts)
    return resume_file(opts, given)


def resume_file(opts, given):
    """--init: a ClustNet or CAE file is continued, a DN file too with --pretrain True. The
    options set on the command line must agree with the net's own except those of
    RESUME_MAY_CHANGE; the others are the net's."""
    if not opts.init:
        return None
    checkpoint = load_checkpoint(opts.init)
    if checkpoint.get("kind") not in (layout.CLUSTNET, layout.CAE) and not (
            checkpoint.get("kind") == layout.DETECTNET and opts.pretrain):
        return None
    saved = checkpoint_options(checkpoint, opts.init)
    if opts.seeds:
        raise ClustNetError(f"--seeds with --init {opts.init}: a resume continues one net; continue a "
                            "--seeds run with its own command and --ind_id N --resume True")
    for name in ("init_enc", "init_clu"):
        if getattr(opts, name):
            raise ClustNetError(f"--{name} with --init {opts.init}: a resumed net keeps its own weights")
    check_same_options(opts, saved, set(given) - set(RESUME_MAY_CHANGE) - {"init", "pretrain", "pretrain_cae"},
                       opts.init)
    for name in RESUME_MAY_CHANGE:
        if name in given:
            setattr(saved, name, getattr(opts, name))
    if saved.epochs <= checkpoint["epoch"]:
        raise ClustNetError(f"--epochs {saved.epochs}: {opts.init} is already at epoch {checkpoint['epoch']}; "
                            "ask for more epochs to resume")
    exp, kind = layout.Experiment(saved.exp_id), checkpoint["kind"]
    later = [e for e in exp.epochs(saved.ind_id, kind) if e > checkpoint["epoch"]]
    if later and not saved.overwrite:
        raise ClustNetError(f"net {saved.ind_id} of experiment {exp.exp_id!r} already has epochs up to "
                            f"{later[-1]}: resume from {exp.weights_path(saved.ind_id, later[-1], kind)}, "
                            f"or pass --overwrite True to redo the epochs after {checkpoint['epoch']}")
    return Resume([saved.ind_id], [opts.init], [checkpoint], kind, saved)


def resume_nets(opts):
    """--resume True: the nets of experiment --exp_id numbered --ind_id, --ind_id + 1, ... (one
    per seed of --seeds, else one), continued from the last epoch that all of them finished
    (the later epochs of some nets are redone), or None when none has finished an epoch yet:
    then the run starts them afresh. Each existing net's .ini must agree with `opts` except
    for RESUME_MAY_CHANGE, and give the net its own seed."""
    if opts.ind_id is None:
        raise ClustNetError("--resume True needs --ind_id: the number of the (first) net to continue")
    if opts.init and load_checkpoint(opts.init).get("kind") in (layout.CLUSTNET, layout.CAE):
        raise ClustNetError(f"--resume True with --init {opts.init}: --init continues one net from that file, "
                            "--resume True the nets this command names; choose one")
    exp, kind = layout.Experiment(opts.exp_id), run_kind(opts)
    seeds = opts.seeds or [opts.seed]
    ind_ids = [opts.ind_id + k for k in range(len(seeds))]
    existing = [ind_id for ind_id in ind_ids if exp.ini_path(ind_id, kind).is_file()]
    compared = {option for option in vars(opts)} - set(RESUME_MAY_CHANGE) - set(PER_NET)
    for ind_id, seed in zip(ind_ids, seeds):
        if ind_id in existing:
            path = exp.ini_path(ind_id, kind)
            saved = read_saved_options(path)
            check_same_options(opts, saved, compared, path)
            if saved.seed != seed:
                raise ClustNetError(f"net {ind_id} of experiment {exp.exp_id!r} was trained with seed {saved.seed}, "
                                    f"this command gives it seed {seed}: give the same --seeds (or --seed)")
    finished = {ind_id: exp.epochs(ind_id, kind) for ind_id in existing}
    if not any(finished.values()):
        return None
    missing = [ind_id for ind_id in ind_ids if not finished.get(ind_id)]
    if missing:
        raise ClustNetError(f"--resume True: net{'s' * (len(missing) > 1)} {', '.join(map(str, missing))} of "
                            f"experiment {exp.exp_id!r} {'have' if len(missing) > 1 else 'has'} no finished "
                            f"epoch while others of these {len(ind_ids)} nets have: nets trained together "
                            "continue from the same epoch; continue the started nets with a command naming "
                            "only them, or remove the others' files")
    epoch = min(done[-1] for done in finished.values())
    beyond = [ind_id for ind_id, done in finished.items() if done[-1] > opts.epochs]
    if epoch < opts.epochs and beyond:
        raise ClustNetError(f"--epochs {opts.epochs}: net {beyond[0]} of experiment {exp.exp_id!r} is already "
                            f"at epoch {finished[beyond[0]][-1]}; ask for at least that many epochs")
    paths = [exp.weights_path(ind_id, epoch, kind) for ind_id in ind_ids]
    checkpoints = [load_checkpoint_of(path, (kind,), "--resume True") for path in paths]
    return Resume(ind_ids, paths, checkpoints, kind, opts)


def restore(resume, exp, model, optimisers, generators, ini_texts):
    """Put each resumed net's weights, optimiser and RNG state back into the stacked model,
    optimisers and generators, and rewrite its .ini (`ini_texts`, in the nets' order: the
    options continued with)."""
    checkpoints = resume.checkpoints
    load_net_states(model, [checkpoint["model"] for checkpoint in checkpoints])
    for name, optimiser in optimisers.items():
        load_net_optimiser_states(optimiser, [checkpoint["optimisers"][name] for checkpoint in checkpoints])
    for generator, checkpoint in zip(generators, checkpoints):
        generator.set_state(checkpoint["generator"])
    for ind_id, ini_text in zip(resume.ind_ids, ini_texts):
        with layout.atomic_path(exp.ini_path(ind_id, resume.kind)) as tmp:
            tmp.write_text(ini_text)


def resume_hints(exp, ind_ids, kind, epochs):
    """Where each net can resume from, as the files on disk say: its last weights file; for
    several nets numbered in a row, also how to continue them together."""
    finished = {ind_id: exp.epochs(ind_id, kind) for ind_id in ind_ids}
    hints = [f"net {ind_id}: no epoch finished, nothing to resume" if not done else
             f"net {ind_id} finished epoch {done[-1]}: resume with python3 code/trainVal.py "
             f"--init {exp.weights_path(ind_id, done[-1], kind)} --epochs {epochs}"
             for ind_id, done in finished.items()]
    if all(finished.values()) and len(ind_ids) > 1 and \
            list(ind_ids) == list(range(ind_ids[0], ind_ids[0] + len(ind_ids))):
        hints.append(f"or continue them together: rerun the command with --ind_id {ind_ids[0]} --resume True")
    return "; ".join(hints)

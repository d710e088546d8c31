"""The entry of trainVal.py: which mode a command line asks for (ClustNet, the one-expert
baseline, the autoencoder, or continuing nets), and running it."""

from .nets import run_kind
from .resume import resume_from
from .errors import ClustNetError
from .layout import CLUSTNET
from .options import options_ini, read_command_line
from .pretraining import PRETRAINING_MODES
from .training import CLUSTNET_MODE, train

MODES = {CLUSTNET: CLUSTNET_MODE, **PRETRAINING_MODES}  # kind of net -> how it trains


def main(argv):
    command = read_command_line(argv)
    opts = command.opts
    if opts.pretrain and opts.pretrain_cae:
        raise ClustNetError("--pretrain True and --pretrain_cae True: choose one mode")
    if command.print_config:  # before anything reads data or files
        print(options_ini(opts), end="")
        return
    resume = resume_from(opts, command.given)
    if resume is not None and resume.finished:
        print(f"experiment {opts.exp_id}: net{'s' * (len(resume.ind_ids) > 1)} "
              f"{', '.join(map(str, resume.ind_ids))} finished epoch {resume.epoch} (--epochs {opts.epochs}): "
              "nothing to train")
        return
    kind = resume.kind if resume else run_kind(opts)
    opts = resume.opts if resume else opts
    try:
        train(opts, kind, MODES[kind], resume, argv)
    except KeyboardInterrupt:  # before the first epoch started: the loops report their own
        raise ClustNetError("interrupted before training started; no epoch to resume from") from None

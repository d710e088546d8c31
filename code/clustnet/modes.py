"""The entry of trainVal.py: which mode a command line asks for (ClustNet, the one-expert
baseline, the autoencoder, or continuing a net), and running it."""

from .nets import run_kind
from .resume import resume_from
from .errors import ClustNetError
from .layout import CLUSTNET
from .options import build_parser, parse_options
from .pretraining import PRETRAINING_MODES
from .training import CLUSTNET_MODE, train

MODES = {CLUSTNET: CLUSTNET_MODE, **PRETRAINING_MODES}  # kind of net -> how it trains


def main(argv):
    opts = parse_options(argv)
    if opts.pretrain and opts.pretrain_cae:
        raise ClustNetError("--pretrain True and --pretrain_cae True: choose one mode")
    given = set(vars(build_parser("").parse_args(argv))) - {"config"}
    resume = resume_from(opts, given)
    kind = resume.kind if resume else run_kind(opts)
    opts = resume.opts if resume else opts
    try:
        train(opts, kind, MODES[kind], resume)
    except KeyboardInterrupt:  # before the first epoch started: the loops report their own
        raise ClustNetError("interrupted before training started; no epoch to resume from") from None

"""Analyse a finished experiment: `python3 processResults.py --exp_id X --acc_evol lr [...]`;
tabulate experiments: `python3 processResults.py --summary X Y [...]`."""

import sys

from clustnet.analyses import main
from clustnet.errors import run_cli

if __name__ == "__main__":
    sys.exit(run_cli(main, sys.argv[1:]))

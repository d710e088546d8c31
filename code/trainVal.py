"""Train ClustNet: `python3 trainVal.py -c clust.config --exp_id X [--option value ...]`."""

import sys

from clustnet.errors import run_cli
from clustnet.modes import main

if __name__ == "__main__":
    sys.exit(run_cli(main, sys.argv[1:]))

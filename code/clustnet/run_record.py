"""The record of how a net was made: for each run of trainVal.py that trained it (the first,
then each resume), when and where it ran, the exact command, the code (git commit and
whether the tree had uncommitted changes) and the versions of the libraries.

A net's record is kept in its .ini, one `[run K]` section per run after the options'
`[default]` section (which is all that -c and the readers of options read), and in each of
its weights files under "run", with the end time of that file's epoch. The end time of
every epoch is also in the net's metrics log (layout.Experiment.metrics_path).
"""

import configparser
import io
import os
import platform
import shlex
import socket
import subprocess
import sys
from datetime import datetime

import numpy
import torch
import torchvision

from .layout import PROJECT_ROOT
from .options import build_parser, find_config

UNKNOWN = "unknown"
GIT_TIMEOUT_S = 30


def now():
    """The local time with its UTC offset, to the second (ISO 8601)."""
    return datetime.now().astimezone().isoformat(timespec="seconds")


def git(*args):
    """git's output on the project's checkout, or None when git or the repository is absent
    or git fails. No optional locks: the index is never written (a commit may be under way)."""
    try:
        result = subprocess.run(["git", "--no-optional-locks", "-C", str(PROJECT_ROOT), *args],
                                capture_output=True, text=True, timeout=GIT_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout if result.returncode == 0 else None


def git_state():
    """(the commit checked out, "True"/"False" whether files differ from it), "unknown" where
    git cannot say."""
    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain") if commit else None
    return (commit.strip() if commit else UNKNOWN,
            UNKNOWN if status is None else str(bool(status.strip())))


def cpu_model():
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or UNKNOWN


def device_name(device):
    """The device trained on, with the GPU's or the CPU's model."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({cpu_model()})"


def config_path(argv):
    """The -c file of the command line `argv`, as an absolute path ("" without -c)."""
    config = vars(build_parser("").parse_args(argv)).get("config")
    return str(find_config(config).resolve()) if config else ""


def run_started(argv, device):
    """The record of this run, started now with the command-line arguments `argv` (without
    the program: sys.argv[1:] for trainVal.py) on `device`, as a first run: each resumed
    net's copy says where it continued from (first_epoch, resumed_from)."""
    commit, uncommitted = git_state()
    return {"start_time": now(), "host": socket.gethostname(),
            "command": shlex.join([sys.argv[0], *argv]), "cwd": os.getcwd(), "config": config_path(argv),
            "first_epoch": 0, "resumed_from": "",
            "git_commit": commit, "git_uncommitted_changes": uncommitted,
            "python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "numpy": numpy.__version__,
            "device": device_name(device)}


def resumed_runs(started, checkpoint, path):
    """A resumed net's runs: those in the weights file `path` it continues from (none in a
    file written before records were kept), then this one (`started`)."""
    earlier = checkpoint.get("run", {}).get("runs", [])
    return [*earlier, {**started, "first_epoch": checkpoint["epoch"] + 1, "resumed_from": str(path)}]


def ini_text(runs):
    """The `[run K]` sections of a net's .ini, one per run (K = 1 for the first)."""
    parser = configparser.ConfigParser(interpolation=None)
    for number, run in enumerate(runs, 1):
        # One line per value: a command line holding a newline stays one line.
        parser[f"run {number}"] = {key: str(value).replace("\n", "\\n") for key, value in run.items()}
    text = io.StringIO()
    parser.write(text)
    return "\n# How this net was made: one section per run of trainVal.py that trained it.\n" + text.getvalue()


def weights_entry(runs, end_time):
    """What a weights file holds under "run": the net's runs and when its epoch ended."""
    return {"runs": runs, "epoch_end_time": end_time}

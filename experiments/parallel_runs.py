"""Several trainVal.py runs started at the same moment on this machine, as a sweep run with `&`
starts them: the seconds until the last has ended, for 1, 2 and 4 runs at once, under each
thread setting:

- all_cores: every run with one PyTorch thread per core (PyTorch's own default),
  `--num_threads <cores>`;
- shared: trainVal.py's default (`--num_threads 0`: the cores shared evenly among the runs);
- one_thread: `--num_threads 1`.

Usage (from the project root; each run: clust.config, 1 epoch at batch size 64):
  python3 experiments/parallel_runs.py --data_dir ../shared/data [--runs 1 2 4]
      [--settings all_cores shared one_thread] [--train_images N --test_images M] [--csv PATH]

Each row: the seconds until all the runs ended (`wall_s`); `ideal_s`, N x one run alone of
that setting / min(N, cores), and `x_ideal`, wall_s over it; `x_all_cores`, wall_s over the
`all_cores` row with as many runs; the CPU seconds of the runs (`cpu_s`) and of the other
processes meanwhile (`other_cpu_s`: another job's load, which makes a row unreliable; each
configuration first waits up to --wait_quiet seconds for the machine to be idle). The runs
write under a temporary CLUSTNET_ROOT and get the environment without OMP_NUM_THREADS.
--train_images/--test_images: a shorter run, on the first N training and M test images.
"""

import argparse
import os
import resource
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "code"))

from clustnet.errors import ClustNetError, run_cli  # noqa: E402
from clustnet.layout import atomic_path  # noqa: E402

SETTINGS = ("all_cores", "shared", "one_thread")
QUIET_CPUS = 0.15  # the machine counts as idle below this many busy cores


def busy_cpu_seconds():
    """The machine's CPU seconds spent so far outside idle and I/O wait (/proc/stat)."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:8]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wait_until_quiet(limit_s):
    """Wait (at most `limit_s` seconds) until the other processes keep under QUIET_CPUS busy."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        start = busy_cpu_seconds()
        time.sleep(1)
        if busy_cpu_seconds() - start < QUIET_CPUS:
            return


def run_environment():
    return {name: value for name, value in os.environ.items() if name != "OMP_NUM_THREADS"}


def pytorch_default_threads():
    """PyTorch's default number of threads in a fresh process with the runs' environment."""
    result = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                            env=run_environment(), capture_output=True, text=True, check=True)
    return int(result.stdout)


def write_mnist_subset(data_dir, destination, n_train, n_test):
    """The first `n_train` training and `n_test` test images of data_dir's MNIST (IDX files)
    under destination/MNIST/raw; returns `destination`."""
    source, target = Path(data_dir) / "MNIST" / "raw", Path(destination) / "MNIST" / "raw"
    target.mkdir(parents=True)
    for prefix, n_images in (("train", n_train), ("t10k", n_test)):
        for kind, header, item in (("images-idx3-ubyte", 16, 784), ("labels-idx1-ubyte", 8, 1)):
            name = f"{prefix}-{kind}"
            if not (source / name).is_file():
                raise ClustNetError(f"--data_dir {data_dir}: no MNIST file {source / name}")
            raw = (source / name).read_bytes()
            head = bytearray(raw[:header])
            head[4:8] = struct.pack(">I", n_images)  # the number of items, big-endian
            (target / name).write_bytes(bytes(head) + raw[header:header + n_images * item])
    return destination


def run_at_once(n_runs, threads, data_dir, batch_size, epochs):
    """Start `n_runs` trainVal.py runs together (--num_threads `threads`); (wall seconds until
    the last ended, CPU seconds of the runs, CPU seconds of the other processes meanwhile)."""
    with tempfile.TemporaryDirectory() as output_root:
        env = dict(run_environment(), CLUSTNET_ROOT=output_root)
        command = [sys.executable, str(ROOT / "code" / "trainVal.py"), "-c", "clust.config", "--exp_id", "parallel",
                   "--epochs", str(epochs), "--batch_size", str(batch_size), "--data_dir", str(data_dir),
                   "--progress", "False", "--num_threads", str(threads)]
        busy, ours = busy_cpu_seconds(), children_cpu_seconds()
        start = time.perf_counter()
        runs = [subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                 text=True) for _ in range(n_runs)]
        errors = [run.communicate()[1] for run in runs]
        wall = time.perf_counter() - start
        ours = children_cpu_seconds() - ours
        for run, error in zip(runs, errors):
            if run.returncode:
                raise ClustNetError(f"a trainVal.py run failed (exit status {run.returncode}): "
                                    f"{error.strip().splitlines()[-1] if error.strip() else 'no message'}")
        return wall, ours, busy_cpu_seconds() - busy - ours


def measure(settings, run_counts, data_dir, batch_size, epochs, wait_quiet, report=print):
    cores = pytorch_default_threads()
    threads = {"all_cores": cores, "shared": 0, "one_thread": 1}
    rows = []
    for setting in settings:
        for n_runs in run_counts:
            wait_until_quiet(wait_quiet)
            wall, cpu, other = run_at_once(n_runs, threads[setting], data_dir, batch_size, epochs)
            rows.append({"setting": setting, "runs": n_runs, "wall_s": wall, "cpu_s": cpu, "other_cpu_s": other})
            report(f"{setting}, {n_runs} run(s) at once: {wall:.1f} s (CPU {cpu:.1f} s; other processes {other:.1f} s)")
    table = pd.DataFrame(rows)
    alone = table[table.runs == 1].set_index("setting").wall_s
    table["ideal_s"] = [alone.get(s, np.nan) * n / min(n, cores) for s, n in zip(table.setting, table.runs)]
    table["x_ideal"] = table.wall_s / table.ideal_s
    all_cores = table[table.setting == "all_cores"].set_index("runs").wall_s
    table["x_all_cores"] = [wall / all_cores.get(n, np.nan) for wall, n in zip(table.wall_s, table.runs)]
    return cores, table


def parse_arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", required=True, help="the folder holding MNIST/raw")
    parser.add_argument("--runs", type=int, nargs="+", default=[1, 2, 4], help="runs started at once, per row")
    parser.add_argument("--settings", nargs="+", choices=SETTINGS, default=list(SETTINGS))
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--train_images", type=int, help="only the first N training images (a shorter run)")
    parser.add_argument("--test_images", type=int, help="only the first M test images")
    parser.add_argument("--wait_quiet", type=float, default=30,
                        help="seconds to wait, at most, for an idle machine before each configuration")
    parser.add_argument("--csv", help="also write the table to this CSV file")
    return parser.parse_args(argv)


def main(argv):
    args = parse_arguments(argv)
    if min(args.runs) < 1:
        raise ClustNetError(f"--runs {min(args.runs)}: at least 1 run")
    with tempfile.TemporaryDirectory() as subset:
        data_dir = Path(args.data_dir).resolve()
        if args.train_images or args.test_images:
            data_dir = write_mnist_subset(data_dir, Path(subset) / "data", args.train_images or 60000,
                                          args.test_images or 10000)
        cores, table = measure(args.settings, args.runs, data_dir, args.batch_size, args.epochs, args.wait_quiet,
                               report=lambda line: print(line, flush=True))
    print(f"\n{cores} cores (PyTorch's default threads), batch size {args.batch_size}, {args.epochs} epoch(s)")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    if args.csv:
        with atomic_path(args.csv) as tmp:
            table.to_csv(tmp, index=False)


if __name__ == "__main__":
    sys.exit(run_cli(main, sys.argv[1:]))

"""Speed of ClustNet training: `python3 code/benchmark.py [--data_dir D] [--csv PATH]`.

Prints a table: for each batch size, training and evaluation images per second on
MNIST-shaped random data, the seconds one full epoch's artifacts take to write, and with
--data_dir a real trainVal.py MNIST epoch (seconds without writing, with writing in the
training thread and with the background writer, peak memory, test accuracy); one more row
for several seeds trained together. Then, per batch size, the milliseconds of a training step
of the published method and of clust_best.config (two augmented views, terms on the gate)."""

import argparse
import platform
import sys

import torch

from clustnet.benchmarking import benchmark, checkout_benchmarking, gate_terms_cost, side_by_side
from clustnet.errors import ClustNetError, run_cli
from clustnet.layout import atomic_path


def parse_arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[4, 16, 64, 256])
    parser.add_argument("--images", type=int, default=16000,
                        help="timed training images per batch size (400 steps at batch size 4 proved too "
                             "short: the first few hundred steps run slower)")
    parser.add_argument("--seeds", type=int, default=8, help="nets trained together in the seeds row")
    parser.add_argument("--data_dir", help="MNIST's folder: also time real trainVal.py epochs on it")
    parser.add_argument("--real_batch_sizes", type=int, nargs="+", default=[4, 64],
                        help="batch sizes of the real epochs (one net; the seeds row too at its batch size)")
    parser.add_argument("--real_only", action="store_true",
                        help="only the rows with real epochs, without the random-data timings")
    parser.add_argument("--num_threads", type=int, default=0,
                        help="CPU threads (0: PyTorch's default; the real epochs: trainVal.py's, the cores "
                             "shared among the trainVal.py runs on the machine)")
    parser.add_argument("--no_cuda", action="store_true", help="run on the CPU even with a GPU")
    parser.add_argument("--csv", help="also write the table to this CSV file")
    parser.add_argument("--against", metavar="DIR",
                        help="another checkout's code/ folder: compare training speed with it, side by side")
    parser.add_argument("--rounds", type=int, default=6, help="--against: timings of each side per row")
    return parser.parse_args(argv)


def main(argv):
    args = parse_arguments(argv)
    if args.rounds < 1:
        raise ClustNetError(f"--rounds {args.rounds}: must be at least 1")
    against = checkout_benchmarking(args.against) if args.against else None
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.no_cuda else "cpu")
    extra = ["--num_threads", str(args.num_threads)] + (["--no_cuda", "True"] if args.no_cuda else [])
    machine = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    print(f"device {device} ({machine}), torch {torch.__version__}", flush=True)
    if against:
        table = side_by_side(against, args.batch_sizes, args.images, args.seeds, args.rounds, device)
    else:
        table = benchmark(args.batch_sizes, args.images, args.seeds, args.data_dir, args.real_batch_sizes,
                          device, extra, report=lambda line: print(line, flush=True), real_only=args.real_only)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}", na_rep="-"))
    if args.csv:
        with atomic_path(args.csv) as tmp:
            table.to_csv(tmp, index=False)
    if not (args.real_only or args.against):
        print("\nthe cost of clust_best.config's step against the published one and its previous version (one "
              "head, view 1 augmented), and of the representation ingredients on top (one net):")
        print(gate_terms_cost(args.batch_sizes, args.images, device).to_string(
            index=False, float_format=lambda v: f"{v:.4g}"))


if __name__ == "__main__":
    sys.exit(run_cli(main, sys.argv[1:]))

"""Every CN head of the nets of a --cn_heads experiment, scored: the head that the training
loss chose (SCAN's rule, what trainVal.py evaluates) against each of the others.

Usage (from the project root):
  python3 experiments/cn_heads.py --exp_id gate_add_heads_mnist --epoch 10
For each net of the experiment, it loads the weights file of --epoch, scores each head on the
validation split (--split test: the test set), and writes vis/<exp_id>/cn_heads_epoch<E>_<split>.csv
(net, head, loss: the head's mean training loss in that epoch, from the metrics log; selected:
1 for the net's chosen head; binary, pos_clust, neg_clust, as fractions).
"""

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "code"))

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from clustnet.data import binary_targets, load_dataset  # noqa: E402
from clustnet.errors import ClustNetError, run_cli  # noqa: E402
from clustnet.layout import Experiment, atomic_path, read_metrics  # noqa: E402
from clustnet.metrics import accuracies  # noqa: E402
from clustnet.nets import load_clustnet  # noqa: E402


@torch.no_grad()
def head_scores(model, images, batch_size):
    """(log-probabilities, CN distributions) of every head of a one-net model: a list over the heads."""
    chosen, scores = int(model.selected_head[0]), []
    for head in range(model.config.cn_heads):
        model.selected_head.fill_(head)
        log_probs, probs = zip(*(model(images[start:start + batch_size].unsqueeze(0))
                                 for start in range(0, len(images), batch_size)))
        scores.append((torch.cat(log_probs, dim=1)[0].numpy(), torch.cat(probs, dim=1)[0].numpy()))
    model.selected_head.fill_(chosen)
    return scores


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exp_id", required=True)
    parser.add_argument("--epoch", type=int, required=True)
    parser.add_argument("--split", choices=("val", "test"), default="val")
    args = parser.parse_args(argv)
    exp = Experiment(args.exp_id)
    rows, data = [], None
    for ind_id in exp.net_ids():
        path = exp.weights_path(ind_id, args.epoch)
        if not path.is_file():
            raise ClustNetError(f"net {ind_id} of experiment {args.exp_id!r} has no weights file of epoch {args.epoch}")
        model, opts = load_clustnet(path)
        if opts.cn_heads < 2:
            raise ClustNetError(f"net {ind_id} of experiment {args.exp_id!r} has one CN head (--cn_heads {opts.cn_heads})")
        if data is None:
            data = load_dataset(opts.dataset, opts.data_dir, opts.val_size)
            if args.split not in data.splits:
                raise ClustNetError(f"experiment {args.exp_id!r} holds no validation split (--val_size 0): "
                                    "give --split test")
            images, labels = data.split(args.split)
            targets = binary_targets(labels, opts.pos_classes).numpy()
        logged = read_metrics(exp.metrics_path(ind_id)).set_index("epoch").loc[args.epoch]
        for head, (log_probs, probs) in enumerate(head_scores(model, images, opts.test_batch_size)):
            rows.append({"net": ind_id, "head": head + 1, "loss": logged[f"loss_head{head + 1}"],
                         "selected": int(head == int(model.selected_head[0])),
                         **accuracies(labels.numpy(), targets, log_probs, probs, opts.pos_classes,
                                      range(len(data.classes)))})
    if not rows:
        raise ClustNetError(f"experiment {args.exp_id!r} has no nets")
    table = pd.DataFrame(rows, columns=["net", "head", "loss", "selected", "binary", "pos_clust", "neg_clust"])
    out = exp.heads_path(args.epoch, args.split)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6f")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(run_cli(main, sys.argv[1:]))

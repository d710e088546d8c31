"""Baselines for the README's Results tables, on the same test set as ClustNet.

- chance: the clustering accuracy of a uniformly random assignment of each image to one of
  K DNs (the mean over 100 draws: computed, not assumed);
- one expert (`--pretrain True`): the encoder and a single DN trained on the binary target,
  the same training as ClustNet's otherwise (its clustering is trivial: every image goes to
  the one DN, which scores the share of the largest class);
- k-means (scikit-learn, k = K) on the raw pixels of each group, fitted on the training images;
- k-means on the encoder features z of that one-expert net, per group: "cluster the features
  of a coarse classifier", as in hidden-stratification work (GEORGE).

Usage (from the project root):
  python3 experiments/baselines.py --dataset MNIST --data_dir ../shared/data --epochs 10
  python3 experiments/baselines.py --dataset /tmp/cifar/CIFAR10-jpg --name cifar --epochs 10
It trains the one-expert net as net 1 of experiment `baselines_<name>` (rerunning the command
continues that net up to --epochs, or reuses it when it is there: trainVal.py --resume True),
and writes vis/baselines_<name>/baselines.csv (method, binary, pos_clust, neg_clust).
"""

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "code"))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from sklearn.cluster import KMeans  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from clustnet.data import load_dataset  # noqa: E402
from clustnet.layout import DETECTNET, Experiment, atomic_path, read_scores  # noqa: E402
from clustnet.metrics import accuracies, class_groups, clustering_accuracy  # noqa: E402
from clustnet.nets import load_encoder  # noqa: E402


def chance(test_labels, group_classes, n_clusters, draws=100, seed=0):
    """Mean clustering accuracy of uniformly random DN choices, per group."""
    generator = np.random.default_rng(seed)
    result = {}
    for name, classes in group_classes.items():
        labels = test_labels[np.isin(test_labels, classes)]
        scores = [clustering_accuracy(labels, generator.integers(0, n_clusters, len(labels)), classes, n_clusters)
                  for _ in range(draws)]
        result[name] = float(np.mean(scores))
    return result


def kmeans_accuracy(train_features, train_labels, test_features, test_labels, group_classes, n_clusters):
    """k-means fitted on each group's training features, scored on its test features."""
    result = {}
    for name, classes in group_classes.items():
        train_in, test_in = np.isin(train_labels, classes), np.isin(test_labels, classes)
        with threadpool_limits(1, user_api="openmp"):  # scikit-learn's OpenMP fights PyTorch's
            kmeans = KMeans(n_clusters=n_clusters, n_init=3, random_state=0).fit(train_features[train_in])
        result[name] = float(clustering_accuracy(test_labels[test_in], kmeans.predict(test_features[test_in]),
                                                 classes, n_clusters))
    return result


@torch.no_grad()
def encoder_features(encoder, images, batch_size=1000):
    return torch.cat([encoder(images[i:i + batch_size].unsqueeze(0))[0]
                      for i in range(0, len(images), batch_size)]).numpy()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="MNIST")
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--name", default="mnist", help="suffix of the experiment baselines_<name>")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--clust", type=int, default=5)
    parser.add_argument("--num_threads", type=int, default=0, help="passed to trainVal.py")
    args = parser.parse_args()

    exp = Experiment(f"baselines_{args.name}")
    data = load_dataset(args.dataset, args.data_dir)
    pos_classes = list(range(len(data.classes) // 2))
    group_classes = class_groups(pos_classes, range(len(data.classes)))
    train_labels, test_labels = data.train_y.numpy(), data.test_y.numpy()
    rows = [{"method": "chance (uniform random DN)", **chance(test_labels, group_classes, args.clust)}]

    flat = lambda images: images.flatten(1).numpy()
    rows.append({"method": "k-means, raw pixels",
                 **kmeans_accuracy(flat(data.train_x), train_labels, flat(data.test_x), test_labels,
                                   group_classes, args.clust)})

    net, epoch = 1, args.epochs
    trained = subprocess.run([sys.executable, str(ROOT / "code" / "trainVal.py"), "-c", "clust.config",
                              "--exp_id", exp.exp_id, "--ind_id", str(net), "--resume", "True",
                              "--dataset", args.dataset, "--pretrain", "True", "--epochs", str(epoch),
                              "--progress", "False", "--num_threads", str(args.num_threads)]
                             + (["--data_dir", args.data_dir] if args.data_dir else []))
    if trained.returncode:
        sys.exit(trained.returncode)  # trainVal.py said why on stderr
    scores = read_scores(exp.scores_path(net, epoch, kind=DETECTNET))
    one_expert = accuracies(scores.origTarg, scores.targ, scores[["pred_0", "pred_1"]].values,
                            np.ones((len(scores), 1)), pos_classes, range(len(data.classes)))
    rows.append({"method": f"one expert (--pretrain True, {epoch} epochs)", **one_expert})

    encoder, _ = load_encoder(exp.weights_path(net, epoch, DETECTNET))
    rows.append({"method": "k-means, encoder features of the one-expert net",
                 **kmeans_accuracy(encoder_features(encoder, data.train_x), train_labels,
                                   encoder_features(encoder, data.test_x), test_labels, group_classes, args.clust)})

    table = pd.DataFrame(rows, columns=["method", "binary", "pos_clust", "neg_clust"])
    out = exp.baselines_path()
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")
    print(table.to_string(index=False))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

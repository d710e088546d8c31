"""Print the README's Results tables (markdown) from the studies' and baselines' CSVs.

Reads, for each dataset, what the study scripts (and gate_study.sh) wrote with `processResults.py --acc_evol`
(`vis/<exp>/<exp>_testError.csv`) and what baselines.py wrote (`vis/baselines_<name>/baselines.csv`),
and gives the final epoch's test accuracies: mean +- std over seeds for the seed study, one
value per setting for the batch size x learning rate sweep.

Usage (from the project root): python3 experiments/results_table.py
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "code"))

import pandas as pd  # noqa: E402

from clustnet.layout import Experiment  # noqa: E402
from clustnet.options import read_saved_options  # noqa: E402

DATASETS = {"MNIST": ("linDet", "linDet2", "baselines_mnist", "mnist"),
            "CIFAR-10": ("linDet_cifar", "linDet2_cifar", "baselines_cifar", "cifar")}
# experiments/gate_study.sh's variants: clust_best.config, then each ingredient removed; the
# published code's separated mode; and the study of clust_best.config's first version (its
# ablations ran 3 epochs). Each row also names the run's batch size, and --cn_binary_grad
# False where it was set (read from the nets' saved options).
WITHOUT = {"no_views": "without the consistency of two views",
           "no_augmentation": "without augmentation (both views the image itself)",
           "no_balance": "without the per-group balance"}
GATE_VARIANTS = {"best": "clust_best.config",
                 **{name: f"clust_best.config {text}" for name, text in WITHOUT.items()},
                 "cut_binary_grad": "clust_best.config",
                 "separated": "the published code's separated mode (clust.config, --clu_train_mode separated "
                              "--batch_period 1)",
                 "first_best": "clust_best.config's first version",
                 **{f"first_{name}": f"the first version {text}" for name, text in WITHOUT.items()},
                 "first_binary_grad": "the first version with the binary loss reaching the CN"}


def reference_of(variant):
    """The run a shorter variant is compared with at its own epoch."""
    return "first_best" if variant.startswith("first_") else "best"


def run_settings(exp_id):
    """', batch size B' and ', --cn_binary_grad False' where so, from net 1's saved options."""
    opts = read_saved_options(Experiment(exp_id).ini_path(1))
    return f", batch size {opts.batch_size}" + ("" if opts.cn_binary_grad else ", --cn_binary_grad False")


ACCURACIES = ["binary", "pos_clust", "neg_clust"]


def percent(values):
    """'mean +- std' in percent over the values (just the value when there is one)."""
    values = 100 * pd.Series(values, dtype=float)
    if values.isna().all():
        return "-"
    return f"{values.mean():.1f}" if len(values) == 1 else f"{values.mean():.1f} +- {values.std(ddof=1):.1f}"


def final_epochs(exp_id, epoch=None):
    """The rows of `epoch` (default: the last one) in the experiment's --acc_evol CSV."""
    path = Experiment(exp_id).vis_dir / f"{exp_id}_testError.csv"
    if not path.is_file():
        return None
    table = pd.read_csv(path)
    return table[table.epoch == (table.epoch.max() if epoch is None else epoch)]


def gate_row(exp_id, description, gate):
    return ([f"ClustNet, {description}{run_settings(exp_id)}, {len(gate)} seeds (`{exp_id}`)", int(gate.epoch.iloc[0])]
            + [percent(gate[name]) for name in ACCURACIES])


def rows_for(dataset):
    sweep_id, seeds_id, baselines_id, gate_name = DATASETS[dataset]
    rows = []
    final = {}  # variant -> its last epoch
    for variant, description in GATE_VARIANTS.items():
        gate = final_epochs(f"gate_{variant}_{gate_name}")
        if gate is not None and len(gate):
            final[variant] = int(gate.epoch.iloc[0])
            rows.append(gate_row(f"gate_{variant}_{gate_name}", description, gate))
    # A variant shorter than its reference: the reference's numbers at that epoch too.
    shorter = {(reference_of(v), e) for v, e in final.items() if e < final.get(reference_of(v), e)}
    for reference, epoch in sorted(shorter):
        gate = final_epochs(f"gate_{reference}_{gate_name}", epoch)
        rows.append(gate_row(f"gate_{reference}_{gate_name}", f"{GATE_VARIANTS[reference]} at epoch {epoch}", gate))
    seeds = final_epochs(seeds_id)
    if seeds is not None:
        rows.append([f"ClustNet, batch size 4, lr 0.01, {len(seeds)} seeds (`{seeds_id}`)", int(seeds.epoch.iloc[0])]
                    + [percent(seeds[name]) for name in ACCURACIES])
    sweep = final_epochs(sweep_id)
    if sweep is not None:
        for _, net in sweep.sort_values(["batch_size", "lr"]).iterrows():
            rows.append([f"ClustNet, batch size {int(net.batch_size)}, lr {net.lr:g}, seed 1 (`{sweep_id}`)",
                         int(net.epoch)] + [percent([net[name]]) for name in ACCURACIES])
    baselines_path = Experiment(baselines_id).vis_dir / "baselines.csv"
    if baselines_path.is_file():
        for _, baseline in pd.read_csv(baselines_path).iterrows():
            rows.append([baseline.method, ""] + [percent([baseline[name]]) for name in ACCURACIES])
    return rows


def main():
    for dataset in DATASETS:
        rows = rows_for(dataset)
        if not rows:
            continue
        print(f"\n{dataset}, test set, last epoch (accuracies in %):\n")
        print("| model | epochs | binary | positive clustering | negative clustering |")
        print("|---|---|---|---|---|")
        for row in rows:
            print("| " + " | ".join(str(cell) for cell in row) + " |")


if __name__ == "__main__":
    main()

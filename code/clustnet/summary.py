"""`processResults.py --summary`: one table over experiments of the accuracies' mean +- std
over the nets, a row per experiment (per setting, when its nets differ in more than their
seed): on the test set at the last epoch, on the validation split at that epoch (the numbers
to choose on), and at each net's best validation epoch.

analyses.py reads each experiment's accuracy table (metrics logs or scores CSVs); this
module groups the nets, reduces, formats and writes. The std is the sample standard
deviation (n - 1), absent for a single net.
"""

import pandas as pd

from .errors import ClustNetError
from .layout import METRICS_ACCURACIES, atomic_path
from .options import OPTIONS, format_value

# Options that tell nets apart without making them another setting: names, how a run was
# started, seeds, where the data is, the machine, logging.
NOT_A_SETTING = ("exp_id", "ind_id", "overwrite", "resume", "seed", "seeds", "data_dir", "test_batch_size",
                 "no_cuda", "num_threads", "progress", "tensorboard")
HEADERS = {"binary": "binary", "pos_clust": "positive clustering", "neg_clust": "negative clustering"}
# The table's columns; the val_* and best_* ones only when a row has a validation split.
GROUP_COLUMNS = ["experiment", "setting", "nets", "net_ids", "epoch"]
TEST_COLUMNS = [f"test_{name}_{stat}" for name in METRICS_ACCURACIES for stat in ("mean", "std")]
VAL_COLUMNS = [f"val_{name}_{stat}" for name in METRICS_ACCURACIES for stat in ("mean", "std")]
BEST_COLUMNS = ["best_epochs"] + [f"best_{split}_{name}_{stat}" for split in ("val", "test")
                                  for name in METRICS_ACCURACIES for stat in ("mean", "std")]


def setting_groups(options):
    """[(setting, nets)]: the nets {id: options} grouped by their options but NOT_A_SETTING;
    `setting` names the options whose values differ between the groups ('' for one group).
    Groups in the order of their first net."""
    names = [option.name for option in OPTIONS if option.name not in NOT_A_SETTING
             and len({format_value(getattr(opts, option.name)) for opts in options.values()}) > 1]
    groups = {}
    for net in sorted(options):
        setting = ", ".join(f"{name}={format_value(getattr(options[net], name))}" for name in names)
        groups.setdefault(setting, []).append(net)
    return list(groups.items())


def last_common_epoch(exp_id, table, epoch=None):
    """The epoch at which the nets of `table` are compared: `epoch` if asked (every net must
    have it), else the last epoch that every net has."""
    per_net = [set(rows.epoch) for _, rows in table.groupby("net")]
    common = set.intersection(*per_net)
    if epoch is None:
        if not common:
            raise ClustNetError(f"the nets of experiment {exp_id!r} have no scored epoch in common")
        return max(common)
    if epoch not in common:
        raise ClustNetError(f"{exp_id}@{epoch}: not every net of experiment {exp_id!r} has epoch {epoch} "
                            f"(the nets' common epochs: {format_value(sorted(common)) or 'none'})")
    return epoch


def best_validation_epochs(table, last_epoch):
    """{net: epoch} (a Series): each net's epoch in 1..last_epoch with the highest mean of its
    validation positive and negative clustering accuracies, the earliest on a tie (the
    initial net, epoch 0, is no candidate). Nets without validation scores are left out."""
    if "val_pos_clust" not in table.columns:
        return pd.Series(dtype="int64")
    rows = table[table.epoch.between(1, last_epoch)].dropna(subset=["val_pos_clust", "val_neg_clust"])
    rows = rows.sort_values(["net", "epoch"])
    best = (rows.val_pos_clust + rows.val_neg_clust).groupby(rows.net).idxmax()
    return rows.loc[best].set_index("net").epoch


def mean_and_std(rows, source, target):
    """{target<name>_mean, target<name>_std} of the columns source<name> over `rows`."""
    values = {}
    for name in METRICS_ACCURACIES:
        column = rows[source + name].astype(float)
        values[f"{target}{name}_mean"] = column.mean()
        values[f"{target}{name}_std"] = column.std(ddof=1)  # NaN for one net
    return values


def experiment_rows(exp_id, table, options, epoch=None):
    """The summary rows of one experiment: `table` is its accuracy table (net, epoch,
    binary, pos_clust, neg_clust, maybe val_*), `options` {net: options}, `epoch` the epoch
    asked with EXP@EPOCH (default: each group's last common epoch)."""
    rows = []
    for setting, nets in setting_groups(options):
        group = table[table.net.isin(nets)]
        at = last_common_epoch(exp_id, group, epoch)
        last = group[group.epoch == at]
        row = {"experiment": exp_id, "setting": setting, "nets": len(nets), "net_ids": format_value(nets),
               "epoch": at, **mean_and_std(last, "", "test_")}
        best = best_validation_epochs(group, at)
        if len(best) == len(nets):
            row.update(mean_and_std(last, "val_", "val_"))
            at_best = group.merge(best.reset_index(), on=["net", "epoch"])
            row.update({"best_epochs": format_value([int(best[net]) for net in nets]),
                        **mean_and_std(at_best, "val_", "best_val_"), **mean_and_std(at_best, "", "best_test_")})
        rows.append(row)
    return rows


def baseline_rows(exp_id, baselines):
    """The rows of experiments/baselines.py's table (method, binary, pos_clust, neg_clust):
    one per method, its accuracies as means, no std."""
    return [{"experiment": exp_id, "setting": baseline.method,
             **{f"test_{name}_mean": getattr(baseline, name) for name in METRICS_ACCURACIES}}
            for baseline in baselines.itertuples()]


def summary_table(rows):
    """The rows as one frame of GROUP_COLUMNS, TEST_COLUMNS, and VAL_COLUMNS and BEST_COLUMNS
    when a row has them."""
    frame = pd.DataFrame(rows)
    columns = GROUP_COLUMNS + TEST_COLUMNS + (VAL_COLUMNS + BEST_COLUMNS if "best_epochs" in frame.columns else [])
    frame = frame.reindex(columns=columns)
    return frame.astype({"nets": "Int64", "epoch": "Int64"})


def percent(mean, std):
    """'mean +- std' in percent, one decimal; the mean alone without a std; '-' without a mean."""
    if pd.isna(mean):
        return "-"
    return f"{100 * mean:.1f}" if pd.isna(std) else f"{100 * mean:.1f} +- {100 * std:.1f}"


def markdown(frame):
    """The table as Markdown, under a line saying what its numbers are."""
    best = "best_epochs" in frame.columns
    headers = ["experiment", "setting", "nets", "epoch", *HEADERS.values()]
    if best:
        headers += ([f"val. {text} at epoch" for text in HEADERS.values()] + ["best val. epoch"]
                    + [f"val. {text}" for text in HEADERS.values()]
                    + [f"test {text} (best)" for text in HEADERS.values()])
    lines = []
    for row in frame.itertuples(index=False):
        row = row._asdict()
        cells = [f"`{row['experiment']}`", row["setting"] or "",
                 *("" if pd.isna(row[key]) else str(row[key]) for key in ("nets", "epoch")),
                 *(percent(row[f"test_{name}_mean"], row[f"test_{name}_std"]) for name in HEADERS)]
        if best:
            cells += [percent(row[f"val_{name}_mean"], row[f"val_{name}_std"]) for name in HEADERS]
            cells += [row["best_epochs"] if isinstance(row["best_epochs"], str) else "-"]
            cells += [percent(row[f"best_{split}_{name}_mean"], row[f"best_{split}_{name}_std"])
                      for split in ("val", "test") for name in HEADERS]
        lines.append("| " + " | ".join(cells) + " |")
    caption = ("Accuracies in %, mean +- std over the nets (sample std); test set at `epoch` (the last epoch "
               "every net of the row has, or EXP@EPOCH's)" + (
                   ", the validation split at that epoch (choose on these), and at each net's best validation "
                   "epoch (1 to `epoch`, the highest mean of its validation positive and negative clustering "
                   "accuracies, the earliest on a tie)" if best else "") + ".")
    return "\n".join([caption, "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers), *lines]) + "\n"


def write_summary(frame, text, csv_path, markdown_path):
    """The table as CSV (accuracies as fractions) and its Markdown, each written atomically."""
    with atomic_path(csv_path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6f")
    with atomic_path(markdown_path) as tmp:
        tmp.write_text(text)

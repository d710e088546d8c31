"""processResults.py --summary: the nets grouped by setting, the mean +- std at the last
epoch and at each net's best validation epoch, by hand and on a tiny trained experiment;
baseline rows; the errors."""

import argparse
import os
import shutil

import numpy as np
import pandas as pd
import pytest

from conftest import TINY, run_cli, write_mnist
from clustnet import analyses, summary
from clustnet.errors import ClustNetError
from clustnet.errors import run_cli as run_in_process
from clustnet.layout import Experiment, read_scores, summary_paths
from clustnet.metrics import accuracies
from clustnet.options import default_values

EXP = "grid"


def net_options(**changes):
    return argparse.Namespace(**{**default_values(), **changes})


def test_nets_that_differ_in_their_seed_only_are_one_setting():
    options = {1: net_options(seed=1, ind_id=1, num_threads=2), 2: net_options(seed=2, ind_id=2, resume=True)}
    assert summary.setting_groups(options) == [("", [1, 2])]
    options[3] = net_options(seed=1, lr=[0.1], batch_size=8)
    options[4] = net_options(seed=3, lr=[0.1], batch_size=8)
    assert summary.setting_groups(options) == [("batch_size=4, lr=0.01", [1, 2]), ("batch_size=8, lr=0.1", [3, 4])]


def accuracy_rows(net, epochs, binary, pos, neg, val_pos=None, val_neg=None):
    frame = pd.DataFrame({"net": net, "epoch": epochs, "binary": binary, "pos_clust": pos, "neg_clust": neg})
    if val_pos is not None:
        frame = frame.assign(val_binary=0.9, val_pos_clust=val_pos, val_neg_clust=val_neg)
    return frame


def test_mean_std_at_the_last_common_epoch_and_the_best_validation_epoch_by_hand():
    table = pd.concat([
        # net 1: its validation clustering (mean of pos and neg) is best at epochs 2 and 3 (0.6): 2, the earliest;
        # epoch 0 is higher still, but the initial net is no candidate.
        accuracy_rows(1, [0, 1, 2, 3], [0.5, 0.8, 0.9, 0.95], [0.2, 0.3, 0.4, 0.5], [0.2, 0.3, 0.6, 0.7],
                      val_pos=[0.9, 0.5, 0.7, 0.5], val_neg=[0.9, 0.4, 0.5, 0.7]),
        # net 2: best at epoch 1; it has epoch 4, which net 1 has not: the row is at epoch 3.
        accuracy_rows(2, [0, 1, 2, 3, 4], [0.5, 0.7, 0.8, 0.85, 0.99], [0.2, 0.6, 0.3, 0.3, 0.9],
                      [0.2, 0.5, 0.3, 0.4, 0.9], val_pos=[0.2, 0.8, 0.3, 0.3, 0.9], val_neg=[0.2, 0.6, 0.3, 0.3, 0.9]),
    ], ignore_index=True)
    options = {1: net_options(seed=1), 2: net_options(seed=2)}
    [row] = summary.experiment_rows("exp", table, options)
    assert (row["setting"], row["nets"], row["net_ids"], row["epoch"], row["best_epochs"]) == ("", 2, "1 2", 3, "2 1")
    assert row["test_binary_mean"] == pytest.approx(0.9) and row["test_binary_std"] == pytest.approx(0.1 / np.sqrt(2))
    assert row["test_pos_clust_mean"] == pytest.approx(0.4) and row["test_neg_clust_std"] == pytest.approx(np.std(
        [0.7, 0.4], ddof=1))
    # Validation at the row's epoch 3: net 1 (0.5, 0.7), net 2 (0.3, 0.3).
    assert row["val_pos_clust_mean"] == pytest.approx(0.4) and row["val_neg_clust_mean"] == pytest.approx(0.5)
    assert row["val_pos_clust_std"] == pytest.approx(np.std([0.5, 0.3], ddof=1))
    assert row["best_val_pos_clust_mean"] == pytest.approx(0.75)
    assert row["best_val_neg_clust_mean"] == pytest.approx(0.55)
    assert row["best_test_binary_mean"] == pytest.approx(0.8) and row["best_test_pos_clust_mean"] == pytest.approx(0.5)
    assert row["best_test_neg_clust_std"] == pytest.approx(np.std([0.6, 0.5], ddof=1))
    # At an epoch asked for (EXP@2), the best epoch is chosen among epochs 1..2.
    [row] = summary.experiment_rows("exp", table, options, epoch=2)
    assert (row["epoch"], row["best_epochs"]) == (2, "2 1") and row["test_binary_mean"] == pytest.approx(0.85)
    with pytest.raises(ClustNetError, match="not every net of experiment 'exp' has epoch 4"):
        summary.experiment_rows("exp", table, options, epoch=4)
    # Without a validation split: no best_* numbers.
    [row] = summary.experiment_rows("exp", table.drop(columns=["val_binary", "val_pos_clust", "val_neg_clust"]),
                                    options)
    assert "best_epochs" not in row


def test_markdown_of_one_net_a_setting_and_a_baseline():
    rows = summary.experiment_rows("exp", accuracy_rows(1, [0, 1], [0.5, 0.875], [0.2, 0.25], [0.2, 0.5]),
                                   {1: net_options()})
    rows += summary.baseline_rows("base", pd.DataFrame({"method": ["chance"], "binary": [np.nan],
                                                        "pos_clust": [0.213], "neg_clust": [0.2144]}))
    text = summary.markdown(summary.summary_table(rows))
    assert text.splitlines()[2:] == [
        "| experiment | setting | nets | epoch | binary | positive clustering | negative clustering |",
        "|---|---|---|---|---|---|---|",
        "| `exp` |  | 1 | 1 | 87.5 | 25.0 | 50.0 |",
        "| `base` | chance |  |  | - | 21.3 | 21.4 |"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Experiment `grid`: nets 1 and 2 (seeds 1 and 2) at lr 0.05, net 3 at lr 0.02, 2 epochs
    on a generated MNIST with a validation split of 40 training images."""
    base = tmp_path_factory.mktemp("summary")
    write_mnist(base / "mnist")
    root = base / "out"
    env = {**os.environ, "CLUSTNET_ROOT": str(root)}
    for lr, seeds in (("0.05", ["1", "2"]), ("0.02", ["3"])):
        result = run_cli("trainVal.py", "-c", "clust.config", "--exp_id", EXP, "--epochs", "2", "--val_size", "40",
                         "--data_dir", base / "mnist", "--batch_size", "8", "--lr", lr, "--seeds", *seeds, *TINY,
                         env=env)
        assert result.returncode == 0, result.stderr
    return root


@pytest.fixture
def experiment(trained, output_root):
    """The trained experiment copied into this test's output root."""
    for folder in ("nets", "results", "vis"):
        shutil.copytree(trained / folder, output_root / folder)
    return Experiment(EXP, root=output_root)


def scored_accuracies(exp, net, epoch, split):
    frame = read_scores(exp.scores_path(net, epoch, split))
    return accuracies(frame.origTarg, frame.targ, frame[["pred_0", "pred_1"]].to_numpy(),
                      frame.filter(like="clust_").to_numpy(), range(5), range(10))


def test_summary_of_a_trained_experiment(experiment, capsys):
    assert run_in_process(analyses.main, ["--summary", EXP, "--summary_name", "tiny"]) == 0
    out = capsys.readouterr().out
    csv_path, md_path = summary_paths("tiny")
    table = pd.read_csv(csv_path)
    assert list(table.setting) == ["lr=0.05", "lr=0.02"] and list(table.nets) == [2, 1]
    assert list(table.net_ids) == ["1 2", "3"] and list(table.epoch) == [2, 2]
    # Recomputed from the scores CSVs: the test accuracies at epoch 2, the best validation epochs.
    for row, nets in zip(table.itertuples(), ([1, 2], [3])):
        last = pd.DataFrame([scored_accuracies(experiment, net, 2, "test") for net in nets])
        best = [max((1, 2), key=lambda epoch: (lambda v: v["pos_clust"] + v["neg_clust"])(
            scored_accuracies(experiment, net, epoch, "val"))) for net in nets]
        at_best_val = pd.DataFrame([scored_accuracies(experiment, net, epoch, "val") for net, epoch in zip(nets, best)])
        at_best_test = pd.DataFrame([scored_accuracies(experiment, net, epoch, "test")
                                     for net, epoch in zip(nets, best)])
        assert row.best_epochs == " ".join(map(str, best))
        at_last_val = pd.DataFrame([scored_accuracies(experiment, net, 2, "val") for net in nets])
        for name in ("binary", "pos_clust", "neg_clust"):
            assert getattr(row, f"val_{name}_mean") == pytest.approx(at_last_val[name].mean(), abs=1e-6)
        for name in ("binary", "pos_clust", "neg_clust"):
            assert getattr(row, f"test_{name}_mean") == pytest.approx(last[name].mean(), abs=1e-6)
            assert getattr(row, f"best_val_{name}_mean") == pytest.approx(at_best_val[name].mean(), abs=1e-6)
            assert getattr(row, f"best_test_{name}_mean") == pytest.approx(at_best_test[name].mean(), abs=1e-6)
            if len(nets) > 1:
                assert getattr(row, f"test_{name}_std") == pytest.approx(last[name].std(ddof=1), abs=1e-6)
            else:
                assert np.isnan(getattr(row, f"test_{name}_std"))
    # Printed as Markdown, and written so.
    assert md_path.read_text() in out
    assert f"wrote {csv_path}" in out and f"wrote {md_path}" in out
    assert "| `grid` | lr=0.05 | 2 | 2 | " in out


def test_acc_evol_of_a_validation_run_from_the_metrics_logs_and_from_the_scores(experiment):
    study = analyses.Study(EXP)
    assert all(analyses.logged_accuracies(study, net) is not None for net in (1, 2, 3))
    from_logs = analyses.accuracy_evolution(study, ["lr"])[0]
    text = experiment.accuracy_table_path().read_text()
    assert list(from_logs.columns) == ["net", "lr", "epoch", "binary", "pos_clust", "neg_clust",
                                       "val_binary", "val_pos_clust", "val_neg_clust"]
    for net in (1, 2, 3):
        experiment.metrics_path(net).unlink()
    from_scores = analyses.accuracy_evolution(analyses.Study(EXP), ["lr"])[0]
    pd.testing.assert_frame_equal(from_logs, from_scores, atol=1e-8)  # the logs keep 9 digits
    assert experiment.accuracy_table_path().read_text() == text
    assert scored_accuracies(experiment, 3, 1, "val")["neg_clust"] == pytest.approx(
        from_scores.val_neg_clust[(from_scores.net == 3) & (from_scores.epoch == 1)].item())


def test_summary_adds_baseline_rows_and_epochs(experiment, capsys):
    baselines = Experiment("baselines_tiny").baselines_path()
    baselines.parent.mkdir(parents=True)
    pd.DataFrame({"method": ["chance (uniform random DN)", "one expert"], "binary": [np.nan, 0.99],
                  "pos_clust": [0.21, 0.22], "neg_clust": [0.2, 0.21]}).to_csv(baselines, index=False)
    assert run_in_process(analyses.main, ["--summary", EXP, f"{EXP}@1", "baselines_tiny"]) == 0
    table = pd.read_csv(summary_paths("summary")[0])
    assert list(table.experiment) == [EXP] * 4 + ["baselines_tiny"] * 2
    assert list(table.epoch.fillna(-1)) == [2, 2, 1, 1, -1, -1]
    assert list(table.best_epochs[2:].fillna("")) == ["1 1", "1", "", ""]  # at epoch 1, the only candidate
    assert table.test_pos_clust_mean.iloc[-2] == pytest.approx(0.21)
    assert "| `baselines_tiny` | one expert |  |  | 99.0 | 22.0 | 21.0 |" in capsys.readouterr().out


def test_experiments_joined_by_a_comma_are_pooled_into_one_row(experiment, output_root, capsys):
    shutil.copytree(output_root / "nets" / EXP, output_root / "nets" / "more")
    for folder in ("results", "vis"):
        shutil.copytree(output_root / folder / EXP, output_root / folder / "more")
    assert run_in_process(analyses.main, ["--summary", EXP, f"{EXP},more@1"]) == 0
    table = pd.read_csv(summary_paths("summary")[0])
    pooled = table[table.experiment == f"{EXP},more"]
    assert list(pooled.setting) == ["lr=0.05", "lr=0.02"] and list(pooled.nets) == [4, 2]
    assert list(pooled.net_ids) == [f"{EXP}:1 {EXP}:2 more:1 more:2", f"{EXP}:3 more:3"]
    assert list(pooled.epoch) == [1, 1]
    # The same nets twice: the mean of the two, a sample std over four values.
    pair = pd.DataFrame([scored_accuracies(experiment, net, 1, "test") for net in (1, 2, 1, 2)])
    assert pooled.test_neg_clust_mean.iloc[0] == pytest.approx(pair.neg_clust.mean(), abs=1e-6)
    assert pooled.test_neg_clust_std.iloc[0] == pytest.approx(pair.neg_clust.std(ddof=1), abs=1e-6)
    assert f"| `{EXP},more` | lr=0.05 | 4 | 1 | " in capsys.readouterr().out


def error_line(capsys, *argv):
    assert run_in_process(analyses.main, list(argv)) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    return lines[0]


@pytest.mark.parametrize("argv, message", [
    (["--summary", "nothing"], "no experiment 'nothing'"),
    (["--summary", f"{EXP}@x"], "needs an epoch number"),
    (["--summary", f"{EXP}@7"], "not every net of experiment 'grid' has epoch 7"),
    (["--summary", "a/b"], "not a plain folder name"),
    (["--summary", f"{EXP},nothing"], "experiment 'nothing' has no nets to pool"),
    (["--summary", f"{EXP},a/b"], "not a plain folder name"),
    (["--summary", EXP, "--summary_name", "../x"], "not a plain file name"),
    (["--summary", EXP, "--exp_id", EXP], "--exp_id, --train and --nets_to_remove are for"),
    (["--summary", EXP, "--train"], "--exp_id, --train and --nets_to_remove are for"),
    (["--acc_evol", "seed"], "--acc_evol analyses one experiment: give it with --exp_id"),
])
def test_bad_summary_requests_are_one_error_line_and_write_nothing(experiment, capsys, argv, message):
    assert message in error_line(capsys, *argv)
    assert not summary_paths("summary")[0].parent.exists()


def test_an_experiment_without_scores_is_one_error_line(trained, output_root, capsys):
    shutil.copytree(trained / "nets", output_root / "nets")
    assert "net 1 of experiment 'grid' has no test scores" in error_line(capsys, "--summary", EXP)

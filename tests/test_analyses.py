"""processResults.py on a tiny trained experiment: every analysis's files and numbers,
recomputed here from the scores CSVs, the weights files and the data; and the errors."""

import argparse
import os
import re
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from matplotlib.image import imread
from PIL import Image

from conftest import REPO, TINY, run_cli, write_mnist
from clustnet import analyses
from clustnet.checkpoint import load_checkpoint
from clustnet.nets import load_clustnet
from clustnet.data import load_dataset
from clustnet.errors import run_cli as run_in_process
from clustnet.layout import Experiment, metrics_columns, score_columns, write_metrics
from clustnet.metrics import accuracies

EXP = "tiny"
N_CLUSTERS = 5
ACCURACY = r"binary (\S+)% pos (\S+)% neg (\S+)%"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two nets (seeds 1 and 2, trained together) x 2 epochs on a generated MNIST, with two
    DN layers so that the DNs have a hidden layer. Shared by the tests of this module."""
    base = tmp_path_factory.mktemp("analyses")
    mnist = write_mnist(base / "mnist")
    root = base / "out"
    root.mkdir()
    result = run_cli("trainVal.py", "-c", "clust.config", "--exp_id", EXP, "--epochs", "2",
                     "--data_dir", base / "mnist", "--batch_size", "8", "--lr", "0.05", "--seeds", "1", "2",
                     "--denblayers", "2", *TINY, env={**os.environ, "CLUSTNET_ROOT": str(root)})
    assert result.returncode == 0, result.stderr
    return {"root": root, "mnist": mnist, "data_dir": base / "mnist", "stdout": result.stdout}


@pytest.fixture
def experiment(trained, monkeypatch):
    """The trained experiment as the current output root."""
    monkeypatch.setenv("CLUSTNET_ROOT", str(trained["root"]))
    return Experiment(EXP, root=trained["root"])


def printed(stdout, net, epoch, train):
    """The three accuracies (%) trainVal.py printed for a net, an epoch and a set."""
    line = re.search(rf"net {net} epoch {epoch}: train loss \S+ {ACCURACY} \| test loss \S+ {ACCURACY}", stdout)
    values = [float(v) for v in line.groups()]
    return values[:3] if train else values[3:]


def scores(exp, net, epoch, train=False):
    frame = pd.read_csv(exp.scores_path(net, epoch, train))
    assert list(frame.columns) == score_columns(N_CLUSTERS)
    return frame


def clusters(frame):
    return frame[[f"clust_{k}" for k in range(N_CLUSTERS)]].to_numpy()


def is_png(path):
    return imread(path).ndim == 3


@pytest.mark.parametrize("train", [False, True])
def test_acc_evol_table_equals_the_printed_and_recomputed_accuracies(experiment, trained, train):
    table, variation = analyses.accuracy_evolution(analyses.Study(EXP, train), ["seed", "lr"])
    written = pd.read_csv(experiment.accuracy_table_path(train))
    assert experiment.accuracy_table_path(train).name == f"{EXP}_{'train' if train else 'test'}Error.csv"
    assert list(written.columns) == ["net", "seed", "lr", "epoch", "binary", "pos_clust", "neg_clust"]
    assert list(zip(written.net, written.epoch)) == [(net, epoch) for net in (1, 2) for epoch in range(3)]
    assert list(written.seed) == [1, 1, 1, 2, 2, 2] and set(written.lr) == {0.05}
    for row in written.itertuples():
        frame = scores(experiment, row.net, row.epoch, train)
        expected = accuracies(frame.origTarg, frame.targ, frame[["pred_0", "pred_1"]].to_numpy(), clusters(frame),
                              range(5), range(10))
        assert [row.binary, row.pos_clust, row.neg_clust] == pytest.approx(
            [expected["binary"], expected["pos_clust"], expected["neg_clust"]], abs=1e-6)
        assert [round(100 * v, 2) for v in (row.binary, row.pos_clust, row.neg_clust)] == \
            printed(trained["stdout"], row.net, row.epoch, train)
    # The nets learnt something, so the curves and their total variation are not flat.
    curve = written[written.net == 1].binary.to_numpy()
    assert variation.loc[1, "binary"] == pytest.approx(np.abs(np.diff(curve)).sum()) and curve.max() > curve.min()
    assert is_png(experiment.accuracy_plot_path(train)) and is_png(experiment.total_variation_path(train))


def test_nets_to_remove_leaves_nets_out(experiment):
    table, _ = analyses.accuracy_evolution(analyses.Study(EXP, removed=[2]), ["seed"])
    assert set(table.net) == {1} and set(pd.read_csv(experiment.accuracy_table_path()).net) == {1}


@pytest.fixture
def copied(trained, output_root):
    """The trained experiment's nets and scores (not its vis/, where metrics logs live) copied
    into this test's own output root, to be changed."""
    for folder in ("nets", "results"):
        shutil.copytree(trained["root"] / folder, output_root / folder)
    return Experiment(EXP, root=output_root)


def write_log(exp, net, table, epochs=None):
    """A metrics log for `net` holding the accuracies of `table` (an --acc_evol table: test
    columns, and val_* ones if any) at `epochs` (default: all), the other columns empty."""
    rows = table[(table.net == net) & (table.epoch.isin(epochs) if epochs is not None else True)]
    splits = ("val", "test") if "val_binary" in table.columns else ("test",)
    log = pd.DataFrame({"epoch": rows.epoch.to_numpy()}).reindex(
        columns=metrics_columns(["cn", "main"], ["binary"], splits))
    for name in ("binary", "pos_clust", "neg_clust"):
        log[f"test_{name}"] = rows[name].to_numpy()
        if "val" in splits:
            log[f"val_{name}"] = rows[f"val_{name}"].to_numpy()
    write_metrics(exp.metrics_path(net), log)


def test_acc_evol_reads_a_complete_metrics_log_else_the_scores(copied):
    """Each net's accuracies come from its metrics log when it has every scored epoch, else
    from its scores CSVs; the table is the same either way."""
    from_scores = analyses.accuracy_evolution(analyses.Study(EXP), ["seed"])[0]
    text = copied.accuracy_table_path().read_text()
    for net in (1, 2):
        write_log(copied, net, from_scores)
    assert analyses.accuracy_evolution(analyses.Study(EXP), ["seed"])[0].equals(from_scores)
    assert copied.accuracy_table_path().read_text() == text
    # A changed number in net 1's log shows that the log is read.
    changed = from_scores.copy()
    changed.loc[(changed.net == 1) & (changed.epoch == 1), "binary"] = 0.123456
    write_log(copied, 1, changed)
    # Net 2's log lacks epoch 2: net 2 is read from its scores CSVs, net 1 still from its log.
    write_log(copied, 2, changed.assign(binary=0.5), epochs=[0, 1])
    table = analyses.accuracy_evolution(analyses.Study(EXP), ["seed"])[0]
    assert table.equals(changed)
    # A cut log is left aside too.
    path = copied.metrics_path(1)
    path.write_text(path.read_text()[:-3])
    assert analyses.accuracy_evolution(analyses.Study(EXP), ["seed"])[0].equals(from_scores)


@pytest.mark.parametrize("train", [False, True])
def test_the_metrics_logs_of_trainval_give_the_table_of_the_scores(trained, copied, train):
    """trainVal.py's metrics logs hold the accuracies of the scores CSVs it writes: --acc_evol
    writes the same table from either (`copied` has the scores only)."""
    study = analyses.Study(EXP, train)
    from_scores = analyses.accuracy_evolution(study, ["seed"])[0]
    text = copied.accuracy_table_path(train).read_text()
    for net in (1, 2):
        shutil.copyfile(Experiment(EXP, root=trained["root"]).metrics_path(net), copied.metrics_path(net))
        assert analyses.logged_accuracies(study, net) is not None
    # The logs keep 9 significant digits.
    pd.testing.assert_frame_equal(analyses.accuracy_evolution(study, ["seed"])[0], from_scores, atol=1e-8)
    assert copied.accuracy_table_path(train).read_text() == text


def fake_validation(exp):
    """Give every net a validation split: its train set's scores CSVs, copied as the
    validation scores CSVs (the same format), so the validation accuracies are known."""
    for net in exp.net_ids():
        for epoch in exp.scored_epochs(net, "train"):
            shutil.copyfile(exp.scores_path(net, epoch, "train"), exp.scores_path(net, epoch, "val"))


def test_acc_evol_adds_the_validation_accuracies_and_panel(copied):
    without = analyses.accuracy_evolution(analyses.Study(EXP), ["seed"])[0]
    narrow = imread(copied.accuracy_plot_path()).shape[1]
    train = analyses.accuracy_evolution(analyses.Study(EXP, train=True), ["seed"])[0]
    fake_validation(copied)
    table = analyses.accuracy_evolution(analyses.Study(EXP), ["seed"])[0]
    written = pd.read_csv(copied.accuracy_table_path())
    assert list(written.columns) == ["net", "seed", "epoch", "binary", "pos_clust", "neg_clust",
                                     "val_binary", "val_pos_clust", "val_neg_clust"]
    assert table[list(without.columns)].equals(without)
    for name in ("binary", "pos_clust", "neg_clust"):
        assert np.allclose(written[f"val_{name}"], train[name], atol=1e-6)
    # The figure gets a second panel, the validation split's, beside the test set's.
    assert imread(copied.accuracy_plot_path()).shape[1] > 1.4 * narrow
    # Metrics logs without the validation accuracies that the scores CSVs have: left aside.
    for net in (1, 2):
        write_log(copied, net, without)
    assert analyses.accuracy_evolution(analyses.Study(EXP), ["seed"])[0].equals(table)
    # From metrics logs with val_* columns: the same table.
    for net in (1, 2):
        write_log(copied, net, table)
    for path in copied.results_dir.glob("*_val.csv"):
        path.unlink()
    assert analyses.accuracy_evolution(analyses.Study(EXP), ["seed"])[0].equals(table)


def test_weig_is_the_distance_between_consecutive_weights(experiment):
    distances = analyses.weight_distances(analyses.Study(EXP))
    assert sorted(distances) == [1, 2]
    frame = distances[2]
    assert list(frame.index) == [1, 2]
    assert list(frame.columns) == ["encoder conv 1", "encoder conv 2", "encoder dense", "CN dense 1",
                                   "CN dense 2", "DNs dense 1", "DNs dense 2"]
    before, after = (load_checkpoint(experiment.weights_path(2, epoch))["model"] for epoch in (1, 2))
    expected = torch.sqrt(sum(((after[key] - before[key]) ** 2).sum()
                              for key in ("encoder.conv_weights.0", "encoder.conv_biases.0")))
    assert frame.loc[2, "encoder conv 1"] == pytest.approx(float(expected), rel=1e-5)
    assert (frame > 0).all().all()
    assert is_png(experiment.weights_distance_path(1)) and is_png(experiment.weights_distance_path(2))


def test_each_experts_layer_outputs_by_hand(experiment, trained):
    """The DNs' layers that --feat_map_var reads: expert k's first layer is z W_k + b_k and its
    last is its logits, each expert apart (a wrong permute mixes experts or images)."""
    model, _ = load_clustnet(experiment.weights_path(1, 2))
    images = load_dataset("MNIST", trained["data_dir"]).test_x[:16].unsqueeze(0)
    with torch.no_grad():
        z = model.encoder(images)
        first, last = model.dn.layer_outputs(z)
        for k in range(model.dn.n_experts):
            hidden = z[0] @ model.dn.weights[0][0, k] + model.dn.biases[0][0, k]
            assert torch.allclose(first[0, :, k], hidden, atol=1e-5)
            logits = F.relu(hidden) @ model.dn.weights[1][0, k] + model.dn.biases[1][0, k]
            assert torch.allclose(last[0, :, k], logits, atol=1e-5)


def test_spar_counts_the_zero_activations(experiment, trained):
    table = analyses.sparsity(analyses.Study(EXP), ["seed"])
    assert set(table.net) == {1, 2} and set(table.epoch) == {0, 1, 2}
    assert set(table.layer) == {"encoder conv 1", "encoder conv 2", "encoder z", "CN hidden 1", "DN hidden 1"}
    model, _ = load_clustnet(experiment.weights_path(2, 1))
    images = load_dataset("MNIST", trained["data_dir"]).test_x
    with torch.no_grad():  # every ReLU of net 2 after epoch 1, from its weights
        encoder, cn, dn = model.encoder, model.cn.layers[0], model.dn
        conv_1 = F.relu(F.max_pool2d(F.conv2d(images, encoder.conv_weights[0][0], encoder.conv_biases[0][0]), 2))
        conv_2 = F.relu(F.max_pool2d(F.conv2d(conv_1, encoder.conv_weights[1][0], encoder.conv_biases[1][0]), 2))
        z = F.relu(conv_2.flatten(1) @ encoder.dense.weight[0] + encoder.dense.bias[0])
        expected = {"encoder conv 1": conv_1, "encoder conv 2": conv_2, "encoder z": z,
                    "CN hidden 1": F.relu(z @ cn.weight[0] + cn.bias[0]),
                    "DN hidden 1": F.relu(torch.einsum("bi,kio->bko", z, dn.weights[0][0]) + dn.biases[0][0, :, 0])}
    rows = table[(table.net == 2) & (table.epoch == 1)].set_index("layer").zero_fraction
    for layer, values in expected.items():
        assert rows[layer] == pytest.approx((values == 0).float().mean().item(), abs=1e-3), layer
    assert is_png(experiment.sparsity_path())


def test_failurecases_writes_exactly_the_misclassified_images(experiment, trained):
    wrong = analyses.failure_cases(analyses.Study(EXP), 2, 1)
    frame = scores(experiment, 2, 1)
    expected = np.flatnonzero(frame[["pred_0", "pred_1"]].to_numpy().argmax(axis=1) != frame.targ.to_numpy())
    assert 0 < len(expected) < len(frame) and list(wrong) == list(expected)
    folder = experiment.failures_dir(2, 1)
    assert folder == experiment.vis_dir / "net2" / "epoch1"
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{i}.png" for i in expected)
    pixels, _ = trained["mnist"]["test"]
    for index in expected[:5]:
        assert np.array_equal(np.asarray(Image.open(folder / f"{index}.png")), pixels[index])


def test_class_dn_counts_each_class_per_dn_and_its_matched_share(experiment):
    table = analyses.class_dn_table(analyses.Study(EXP), 1, 2)
    written = pd.read_csv(experiment.class_dn_path(1, 2))
    assert experiment.class_dn_path(1, 2).name == "net1_epoch2_class_dn.csv"
    assert list(written.columns) == ["group", "class", *[f"dn_{k}" for k in range(N_CLUSTERS)], "matched_dn",
                                     "matched_share"]
    pd.testing.assert_frame_equal(written, table, check_dtype=False)
    frame = scores(experiment, 1, 2)
    expected = accuracies(frame.origTarg, frame.targ, frame[["pred_0", "pred_1"]].to_numpy(), clusters(frame),
                          range(5), range(10))
    for group, name in (("positive", "pos_clust"), ("negative", "neg_clust")):
        rows = written[written.group == group]
        counts = rows[[f"dn_{k}" for k in range(N_CLUSTERS)]].to_numpy()
        held = counts[np.arange(len(rows)), rows.matched_dn.to_numpy()]
        assert list(counts.sum(axis=1)) == [int((frame.origTarg == c).sum()) for c in rows["class"]]
        assert held.sum() / counts.sum() == pytest.approx(expected[name])  # the group's clustering accuracy
    # By hand: positive classes 0, 1 and three DNs; class 0 sent twice to DN 2, class 1 twice to DN 0
    # and once to DN 2, so 0 -> 2 (2 of 2) and 1 -> 0 (2 of 3); class 2 once to DN 1 and class 3 twice:
    # 3 -> 1 (2 of 2), and class 2 is matched to a DN that holds none of it.
    chosen = [2, 2, 0, 0, 2, 1, 1, 1]
    hand = pd.DataFrame({"origTarg": [0, 0, 1, 1, 1, 2, 3, 3], "targ": [1, 1, 1, 1, 1, 0, 0, 0],
                         "pred_0": -1.0, "pred_1": -0.5,
                         **{f"clust_{k}": [float(dn == k) for dn in chosen] for k in range(3)}})
    counted = analyses.class_dn_counts(hand, argparse.Namespace(pos_classes=[0, 1]))
    assert counted.group.tolist() == ["positive"] * 2 + ["negative"] * 2 and counted["class"].tolist() == [0, 1, 2, 3]
    assert counted[["dn_0", "dn_1", "dn_2"]].to_numpy().tolist() == [[0, 0, 2], [2, 0, 1], [0, 1, 0], [0, 2, 0]]
    assert counted.matched_dn.tolist()[:2] == [2, 0] and counted.matched_dn[3] == 1 and counted.matched_dn[2] != 1
    assert counted.matched_share.tolist() == pytest.approx([1, 2 / 3, 0, 1])


def test_cludis_is_the_mean_sorted_cn_output(experiment):
    distributions = analyses.cluster_distribution(analyses.Study(EXP, train=True))
    epochs, shares = distributions[1]
    assert epochs == [0, 1, 2] and shares.shape == (3, N_CLUSTERS)
    for row, epoch in enumerate(epochs):
        probabilities = clusters(scores(experiment, 1, epoch, train=True))
        assert np.allclose(shares[row], np.sort(probabilities, axis=1)[:, ::-1].mean(axis=0))
    # By hand: (0.1, 0.6, 0.3) and (0.5, 0.2, 0.3) sort to (0.6, 0.3, 0.1) and (0.5, 0.3, 0.2).
    frame = pd.DataFrame([[0, 1, -0.1, -2.3, 0.1, 0.6, 0.3], [5, 0, -0.2, -1.7, 0.5, 0.2, 0.3]],
                         columns=score_columns(3))
    assert analyses.sorted_cluster_means(frame, None) == pytest.approx([0.55, 0.3, 0.15])
    assert is_png(experiment.cludis_path(1, train=True)) and is_png(experiment.cludis_path(2, train=True))


def test_feat_map_var_is_the_variance_of_each_dn(experiment, trained):
    study = analyses.Study(EXP)
    hidden = analyses.feature_map_variance(study, 1, 1)
    frames = analyses.feature_map_variance(study, 1, 2)
    for group in (True, False):
        assert list(frames[group].index) == [0, 1, 2] and list(frames[group].columns) == [f"DN {k}" for k in range(5)]
        assert not hidden[group].equals(frames[group])
        assert is_png(experiment.feature_variance_path(1, 2, group))
    # The last DN layer gives the 2 logits: recompute DN 3's variance over the negative images.
    data = load_dataset("MNIST", trained["data_dir"])
    model, _ = load_clustnet(experiment.weights_path(1, 2))
    with torch.no_grad():
        logits = model.dn(model.encoder(data.test_x.unsqueeze(0)))[0]  # (B, K, 2)
    negative = data.test_y >= 5
    expected = logits[negative, 3].var(dim=0, unbiased=False).mean()
    assert frames[False].loc[2, "DN 3"] == pytest.approx(expected.item(), rel=1e-4)
    # The hidden layer (after its ReLU): DN 0's variance over the positive images after epoch 1.
    model, _ = load_clustnet(experiment.weights_path(1, 1))
    with torch.no_grad():
        z = model.encoder(data.test_x.unsqueeze(0))[0]
        units = torch.relu(z[~negative] @ model.dn.weights[0][0, 0] + model.dn.biases[0][0, 0])
    assert hidden[True].loc[1, "DN 0"] == pytest.approx(units.var(dim=0, unbiased=False).mean().item(), rel=1e-4)


def test_tsne_on_a_clustnet_and_on_a_cae_weights_file(experiment, tmp_path):
    weights = experiment.weights_path(1, 2)
    indices, points, raw_points = analyses.tsne(analyses.Study(EXP), str(weights), 30)
    assert len(set(indices.tolist())) == 30 and points.shape == (30, 2) and raw_points.shape == (30, 2)
    encoded, raw = experiment.tsne_paths("clustDetectNet1_epoch2")
    assert is_png(encoded) and is_png(raw)
    # A CAE file holds the same encoder beside a decoder: the t-SNE reads its encoder.
    checkpoint = load_checkpoint(weights)
    checkpoint["kind"] = "cae"
    checkpoint["model"] = {key: value for key, value in checkpoint["model"].items() if key.startswith("encoder.")}
    checkpoint["model"]["decoder.weight"] = torch.zeros(3)
    cae = tmp_path / "cae1_epoch2"
    torch.save(checkpoint, cae)
    cae_encoder, _ = analyses.load_encoder(cae)
    clustnet, _ = load_clustnet(weights)
    images = torch.randn(1, 4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(cae_encoder(images), clustnet.encoder(images))


def error_line(capsys, *argv):
    """Run processResults's main in this process: exit status 2 and the one stderr line."""
    assert run_in_process(analyses.main, ["--exp_id", EXP, *argv]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    return lines[0]


@pytest.mark.parametrize("argv, message", [
    (["--failurecases", "9", "1"], "has no net 9"),
    (["--failurecases", "1", "7"], "has no epoch 7"),
    (["--acc_evol", "lrr"], "did you mean lr"),
    (["--feat_map_var", "1", "3"], "have layers 1..2"),
    (["--nets_to_remove", "5", "--cludis"], "--nets_to_remove 5"),
    (["--tsne", "missing_file", "10"], "no weights file"),
    (["--tsne", "x", "many"], "N must be a number"),
    (["--weig", "--bogus"], "unrecognized arguments"),
    ([], "nothing to do"),
])
def test_bad_requests_are_one_error_line(experiment, capsys, argv, message):
    assert message in error_line(capsys, *argv)


def test_a_missing_experiment_is_one_error_line(output_root, capsys):
    assert "no experiment 'tiny'" in error_line(capsys, "--cludis")


def test_a_truncated_csv_is_one_error_line_and_writes_nothing(trained, output_root, capsys):
    shutil.copytree(trained["root"] / "nets", output_root / "nets")
    shutil.copytree(trained["root"] / "results", output_root / "results")
    exp = Experiment(EXP, root=output_root)
    path = exp.scores_path(2, 1)
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:40]) + lines[40][:7])  # cut inside a line
    assert f"scores file {path} is truncated" in error_line(capsys, "--acc_evol", "seed")
    path.write_text("".join(lines[:40]))  # cut between lines
    assert f"scores file {path} is truncated: 39 rows, 80 in other epochs" in error_line(capsys, "--cludis")
    assert not exp.accuracy_table_path().exists() and not exp.accuracy_plot_path().exists()


def test_the_script_runs_from_the_root_one_analysis_after_another(trained):
    """From the repository root: --weig runs and writes, then --failurecases of an epoch
    that does not exist stops with one error line and status 2."""
    env = {**os.environ, "CLUSTNET_ROOT": str(trained["root"])}
    result = run_cli("processResults.py", "--exp_id", EXP, "--weig", "--nets_to_remove", "2",
                     "--failurecases", "1", "4", cwd=REPO, env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == ["error: net 1 of experiment 'tiny' has no epoch 4 (epochs 0..2)"]
    assert "net1_weightsDistances.png" in result.stdout and "net2_weightsDistances.png" not in result.stdout


def test_the_analyses_table_builds_the_parser_and_runs_in_its_order(experiment, capsys, monkeypatch):
    """One table (flag, argparse keywords, function) gives the command line and what runs:
    an entry added to it is a new analysis, run in the table's order whatever the order of
    the flags."""
    calls = []

    def run_extra(study, value):
        calls.append(("extra", value, study.exp.exp_id))
        return ["extra-file"]
    extra = analyses.Analysis("extra", dict(nargs=1, type=int, metavar="K", help="a test analysis"), run_extra)
    monkeypatch.setattr(analyses, "ANALYSES", (extra, *analyses.ANALYSES))
    assert run_in_process(analyses.main, ["--exp_id", EXP, "--cludis", "--extra", "7"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert calls == [("extra", [7], EXP)]
    assert lines[0] == "wrote extra-file"
    assert lines[1:] == [f"wrote {experiment.cludis_path(net, False)}" for net in (1, 2)]
    assert "nothing to do: give one or more of --extra, --acc_evol" in error_line(capsys)

"""What a run records beside its nets: the validation split (--val_size), each net's metrics
log, its run record (.ini and weights file), and TensorBoard's events (--tensorboard True)."""

import configparser
import math
import re

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import REPO, TINY, write_mnist
from clustnet import run_record
from clustnet.checkpoint import checkpoint_options, load_checkpoint
from clustnet.data import load_dataset, validation_indices
from clustnet.errors import ClustNetError
from clustnet.layout import CAE, DETECTNET, METRICS_TIMES, Experiment, read_metrics, read_scores
from clustnet.losses import entropy, nll
from clustnet.metrics import accuracies
from clustnet.modes import main
from clustnet.nets import load_clustnet
from clustnet.options import parse_options, read_saved_options

TIMES = [*METRICS_TIMES, "threads", "end_time"]


def train(mnist_dir, exp_id, *args, epochs=1):
    main(["-c", "clust.config", "--exp_id", exp_id, "--epochs", str(epochs), "--batch_size", "8",
          "--data_dir", str(mnist_dir), "--no_cuda", "True", *TINY, *map(str, args)])
    return Experiment(exp_id)


def test_the_validation_images_are_the_same_for_every_seed_and_leave_the_others_to_train_on(tmp_path, output_root):
    written = write_mnist(tmp_path / "mnist")
    train_pixels, train_labels = written["train"]
    held = validation_indices(len(train_labels), 30)
    kept = np.setdiff1d(np.arange(len(train_labels)), held.numpy())
    assert len(held) == 30 and len(kept) == 170  # a partition of the 200 training images
    assert set(validation_indices(len(train_labels), 10).tolist()) < set(held.tolist())  # nested
    data = load_dataset("MNIST", tmp_path / "mnist", 30)
    # The sets hold those images, in the dataset's order (pixels back from the normalised images).
    for images, labels, positions in ((data.val_x, data.val_y, held.numpy()), (data.train_x, data.train_y, kept)):
        pixels = (data.unnormalise(images) * 255).round().squeeze(1).numpy()
        assert np.array_equal(pixels, train_pixels[positions]) and np.array_equal(labels, train_labels[positions])
    assert len(data.test_y) == 80 and data.splits == ["train", "val", "test"]
    # Two seeds (and any global random state) hold out the same images: their labels, in order.
    runs = {}
    for seed in (1, 2):
        torch.manual_seed(100 + seed)
        exp = train(tmp_path / "mnist", f"seed{seed}", "--seed", seed, "--val_size", 30)
        runs[seed] = read_scores(exp.scores_path(1, 1, "val"))
        assert len(read_scores(exp.scores_path(1, 1, "train"))) == 170
    assert runs[1].origTarg.tolist() == runs[2].origTarg.tolist() == train_labels[held.numpy()].tolist()
    assert not runs[1][["pred_0", "pred_1"]].equals(runs[2][["pred_0", "pred_1"]])  # two different nets


@pytest.mark.parametrize("size, message", [("200", r"^--val_size 200: the training set has 200 images; hold out fewer"),
                                           ("-1", r"^--val_size -1: must be at least 0$")])
def test_a_validation_set_leaving_nothing_to_train_on_is_refused(mnist_dir, output_root, size, message):
    with pytest.raises(ClustNetError, match=message):
        train(mnist_dir, "big", "--val_size", size)
    assert list(output_root.iterdir()) == []


def test_the_metrics_log_holds_the_epochs_losses_as_computed_by_hand(mnist_dir, output_root):
    """One step an epoch (batch size = the 160 training images): the log's mean binary loss
    and mean entropy term are that step's, recomputed from epoch 0's weights and RNG state."""
    exp = train(mnist_dir, "hand", "--val_size", 40, "--batch_size", 160, "--entweig", 0.5, "--lr_cl", 0.02)
    log = read_metrics(exp.metrics_path(1))
    assert list(log.columns) == [
        "epoch", "lr_cn", "lr_main", "loss_binary", "loss_entweig",
        *[f"{split}_{name}" for split in ("train", "val", "test") for name in ("loss", "binary", "pos_clust",
                                                                                 "neg_clust")], *TIMES]
    assert log.epoch.tolist() == [0, 1]
    assert log.loss_binary.isna()[0] and math.isnan(log.lr_cn[0]) and (log.lr_cn[1], log.lr_main[1]) == (0.02, 0.01)
    data = load_dataset("MNIST", mnist_dir, 40)
    start = load_checkpoint(exp.weights_path(1, 0))
    generator = torch.Generator()
    generator.set_state(start["generator"])
    order = torch.randperm(160, generator=generator)  # what train_epoch draws, in its order
    noise = torch.rand(160, 5, generator=generator)
    model, _ = load_clustnet(exp.weights_path(1, 0))
    model.train()
    with torch.no_grad():
        out = model.outputs(data.train_x[order].unsqueeze(0), noise.unsqueeze(0))
    targets = (data.train_y[order] < 5).long().unsqueeze(0)
    binary, term = nll(out.log_probs, targets).item(), entropy(out.probs[0]).mean().item()
    assert log.loss_binary[1] == pytest.approx(binary, rel=1e-5)
    assert log.loss_entweig[1] == pytest.approx(term, rel=1e-5)
    assert log.train_loss[1] == pytest.approx(binary + 0.5 * term, rel=1e-5)
    # Each set's accuracies are those of its scores CSV; its loss that of the CSV's log-probabilities.
    for split in ("train", "val", "test"):
        for epoch in (0, 1):
            scores = read_scores(exp.scores_path(1, epoch, split))
            clusters = scores[[f"clust_{k}" for k in range(5)]].values
            expected = accuracies(scores.origTarg, scores.targ, scores[["pred_0", "pred_1"]].values, clusters,
                                  range(5), range(10))
            for name, value in expected.items():
                assert log[f"{split}_{name}"][epoch] == pytest.approx(value, abs=1e-9)
            if split != "train" or epoch == 0:  # evaluated sets: the loss of the outputs written
                loss = -scores.pred_0.where(scores.targ == 0, scores.pred_1).mean()
                assert log[f"{split}_loss"][epoch] == pytest.approx(loss, rel=1e-6)
    assert (log[list(METRICS_TIMES)] >= 0).all().all() and log.seconds_train[1] > 0
    assert not (output_root / "runs").exists()  # TensorBoard is off by default


def test_a_resumed_net_continues_its_metrics_log_and_its_run_record(mnist_dir, output_root):
    whole = train(mnist_dir, "whole", "--val_size", 20, "--clustdivers", 0.3, epochs=3)
    part = train(mnist_dir, "part", "--val_size", 20, "--clustdivers", 0.3, epochs=1)
    main(["--init", str(part.weights_path(1, 1)), "--epochs", "3"])
    resumed, reference = read_metrics(part.metrics_path(1)), read_metrics(whole.metrics_path(1))
    assert resumed.epoch.tolist() == [0, 1, 2, 3]
    pd.testing.assert_frame_equal(resumed.drop(columns=TIMES), reference.drop(columns=TIMES))
    # The record: the first run, then the resume, in the .ini and in the later weights files.
    ini = configparser.ConfigParser(interpolation=None)
    ini.read(part.ini_path(1))
    assert ini.sections() == ["default", "run 1", "run 2"]
    first, second = ini["run 1"], ini["run 2"]
    assert first["first_epoch"] == "0" and first["resumed_from"] == ""
    assert second["first_epoch"] == "2" and second["resumed_from"] == str(part.weights_path(1, 1))
    assert "--init" in second["command"] and first["start_time"] <= second["start_time"]
    assert [run["start_time"] for run in load_checkpoint(part.weights_path(1, 1))["run"]["runs"]] == \
        [first["start_time"]]
    last = load_checkpoint(part.weights_path(1, 3))["run"]
    assert [run["first_epoch"] for run in last["runs"]] == [0, 2]
    assert last["epoch_end_time"] == resumed.end_time[3]


def test_the_run_record_says_how_the_net_was_made(mnist_dir, output_root):
    exp = train(mnist_dir, "record", "--lr", "0.02")
    text = exp.ini_path(1).read_text()
    ini = configparser.ConfigParser(interpolation=None)
    ini.read_string(text)
    run = ini["run 1"]
    assert set(run) == {"start_time", "host", "command", "cwd", "config", "first_epoch", "resumed_from",
                        "git_commit", "git_uncommitted_changes", "python", "torch", "torchvision", "numpy", "device"}
    assert re.fullmatch(r"[0-9a-f]{40}|unknown", run["git_commit"])
    assert run["git_uncommitted_changes"] in ("True", "False", "unknown")
    assert run["torch"] == torch.__version__ and run["numpy"] == np.__version__
    assert run["config"] == str(REPO / "clust.config") and run["command"].endswith("--lr 0.02")
    assert run["device"].startswith("cpu (") and run["device"] != "cpu ()"
    checkpoint = load_checkpoint(exp.weights_path(1, 1))
    assert checkpoint["run"]["runs"] == [{**dict(run), "first_epoch": 0}]
    assert checkpoint["options"] == text
    # The options read back past the record: as saved options, as the weights file's, and as -c.
    assert read_saved_options(exp.ini_path(1)).lr == [0.02]
    assert checkpoint_options(checkpoint, exp.weights_path(1, 1)).lr == [0.02]
    assert parse_options(["-c", str(exp.ini_path(1))]).lr == [0.02]
    # A .ini written before records were kept has no [run] section: it still reads.
    older = output_root / "older.ini"
    older.write_text(text.split("\n# How this net was made")[0])
    assert parse_options(["-c", str(older)]).lr == [0.02] and read_saved_options(older).lr == [0.02]


def test_without_git_the_record_says_unknown(tmp_path, monkeypatch):
    monkeypatch.setattr(run_record, "PROJECT_ROOT", tmp_path)  # not a repository
    assert run_record.git_state() == ("unknown", "unknown")
    monkeypatch.setenv("PATH", str(tmp_path))  # no git at all
    assert run_record.git_state() == ("unknown", "unknown")


@pytest.mark.parametrize("kind, args, columns", [
    (DETECTNET, ["--pretrain", "True"], ["epoch", "lr_main", "loss_binary", "train_loss", "train_binary",
                                          "test_loss", "test_binary"]),
    (CAE, ["--pretrain_cae", "True"], ["epoch", "lr_main", "train_loss", "test_loss"])])
def test_the_other_modes_log_what_they_have(mnist_dir, output_root, kind, args, columns):
    exp = train(mnist_dir, kind, *args)
    log = read_metrics(exp.metrics_path(1, kind))
    assert list(log.columns) == columns + TIMES and log.epoch.tolist() == [0, 1]
    assert exp.metrics_path(1, kind).name == f"{kind}1_metrics.csv"
    if kind == DETECTNET:  # its step loss is the binary loss
        assert log.loss_binary[1] == pytest.approx(log.train_loss[1], rel=1e-6)
    assert log.train_loss.notna().all() and log.test_loss.notna().all()


def test_tensorboard_gets_the_metrics_log_and_the_confusion_matrices(mnist_dir, output_root):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    exp = train(mnist_dir, "board", "--tensorboard", "True", "--val_size", 20, epochs=2)
    log = read_metrics(exp.metrics_path(1))
    events = EventAccumulator(str(exp.tensorboard_dir(1)), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    assert exp.tensorboard_dir(1) == output_root / "runs" / "board" / "net1"
    numbers = [column for column in log.columns if column not in ("epoch", "end_time")]
    assert sorted(events.Tags()["scalars"]) == sorted(column.replace("_", "/", 1) for column in numbers)
    for column in numbers:
        logged = {event.step: event.value for event in events.Scalars(column.replace("_", "/", 1))}
        expected = {epoch: value for epoch, value in zip(log.epoch, log[column]) if not math.isnan(value)}
        assert logged.keys() == expected.keys(), column
        for epoch, value in expected.items():
            assert logged[epoch] == pytest.approx(value, rel=1e-6, abs=1e-12), (column, epoch)
    for tag in ("confusion/positive", "confusion/negative"):
        pictures = events.Images(tag)
        assert [picture.step for picture in pictures] == [0, 1, 2]
        assert all(picture.encoded_image_string.startswith(b"\x89PNG") and picture.width > 50 for picture in pictures)


def test_the_separated_mode_logs_its_terms_over_the_steps_that_compute_them(mnist_dir, output_root):
    """The CN's turns (--clu_train_mode separated) have a binary loss but no gate terms: the
    terms' means are over the other turns."""
    exp = train(mnist_dir, "turns", "--clu_train_mode", "separated", "--batch_period", 1, "--group_divers", 1,
                "--batch_size", 100)
    log = read_metrics(exp.metrics_path(1))
    assert log.loss_binary.notna()[1] and log.loss_group_divers.notna()[1]
    # Two steps of 100 images: the CN's turn, then the DNs' whose loss is binary - 1 x the term.
    assert log.loss_group_divers[1] > 0 and log.train_loss[1] != pytest.approx(log.loss_binary[1])

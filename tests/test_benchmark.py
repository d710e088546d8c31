"""benchmark.py: this checkout's training speed beside another checkout's (--against), and the
real epochs it times with the files written in the background, in the training thread or not
at all."""

import pytest
import torch

import clustnet.benchmarking
from conftest import CODE, TINY, run_cli
from clustnet.benchmarking import checkout_benchmarking, side_by_side
from clustnet.layout import Experiment


def test_side_by_side_times_both_checkouts_on_every_row():
    other = checkout_benchmarking(CODE)  # this checkout again, under its own name
    assert other is not clustnet.benchmarking and other.__name__ == "clustnet_against.benchmarking"
    table = side_by_side(other, [4], 40, 2, 2, torch.device("cpu"))
    assert [tuple(row) for row in table[["batch_size", "nets"]].values] == [(4, 1), (4, 2)]
    assert (table["train_img_s"] > 0).all() and (table["against_img_s"] > 0).all()
    assert torch.allclose(torch.tensor(table["ratio"].values),
                          torch.tensor((table["train_img_s"] / table["against_img_s"]).values))


def test_against_a_folder_without_clustnet_is_one_clear_line(tmp_path):
    result = run_cli("benchmark.py", "--against", tmp_path, "--csv", tmp_path / "table.csv")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        f"error: --against {tmp_path}: no clustnet/benchmarking.py there (give the code/ folder of another "
        "checkout, e.g. one made by git worktree add)"]
    assert not (tmp_path / "table.csv").exists()


def test_no_rounds_is_one_clear_line(tmp_path):
    result = run_cli("benchmark.py", "--against", CODE, "--rounds", "0", "--csv", tmp_path / "table.csv")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == ["error: --rounds 0: must be at least 1"]
    assert not (tmp_path / "table.csv").exists()


def real_epoch_args(mnist_dir, exp_id, *args):
    return ["-c", "clust.config", "--exp_id", exp_id, "--epochs", "1", "--batch_size", "8",
            "--data_dir", str(mnist_dir), *TINY, "--no_cuda", "True", *args]


@pytest.mark.parametrize("mode", ["inline", "discard"])
def test_the_benchmark_writes_in_the_training_thread_or_not_at_all(mnist_dir, tmp_path, mode):
    row = clustnet.benchmarking.real_epoch(real_epoch_args(mnist_dir, mode), str(tmp_path), mode)
    exp = Experiment(mode, root=tmp_path)
    assert exp.epochs(1) == ([0, 1] if mode == "inline" else [])
    assert exp.metrics_path(1).is_file() == (mode == "inline")
    assert row["run_s"] > 0 and 0 <= row["test_binary_%"] <= 100


def test_the_benchmark_times_real_epochs_with_and_without_writing(mnist_dir, tmp_path, monkeypatch):
    from clustnet import benchmarking

    def in_this_process(data_dir, batch_size, extra, n_nets, writer_mode):  # quicker than a new process each
        argv = ["-c", "clust.config", "--exp_id", writer_mode, "--epochs", "1", "--batch_size", str(batch_size),
                "--data_dir", str(data_dir), "--seeds", *map(str, range(1, n_nets + 1)), *extra]
        return benchmarking.real_epoch(argv, str(tmp_path / f"{n_nets}"), writer_mode)
    monkeypatch.setattr(benchmarking, "real_epoch_in_fresh_process", in_this_process)
    # Batch size 2: an epoch of 100 steps, long enough to print more than "0.0 s".
    table = benchmarking.benchmark([2], 0, 2, mnist_dir, [2], torch.device("cpu"), [*TINY, "--no_cuda", "True"],
                                   report=lambda line: None, real_only=True)
    assert list(table["nets"]) == [1, 2]
    assert (table["real_epoch_s"] > 0).all() and (table["bg_write_epoch_s"] > 0).all()
    assert (table["bg_handover_s"] >= 0).all() and table["test_binary_%"].between(0, 100).all()
    assert Experiment("background", root=tmp_path / "2").epochs(2) == [0, 1]
    assert Experiment("discard", root=tmp_path / "2").epochs(2) == []


def test_the_benchmark_writes_one_epoch_of_files(monkeypatch):
    """write_seconds writes what an MNIST epoch writes (here 1/100 of the images)."""
    from clustnet import benchmarking
    monkeypatch.setattr(benchmarking, "MNIST_SIZES", (600, 100))
    assert benchmarking.write_seconds(torch.device("cpu")) > 0

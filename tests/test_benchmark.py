"""benchmark.py --against: this checkout's training speed beside another checkout's."""

import torch

import clustnet.benchmarking
from conftest import CODE, run_cli
from clustnet.benchmarking import checkout_benchmarking, side_by_side


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

"""--resume True: the nets a command line names continue together from the last epoch all of
them finished, exactly as if never stopped; the same command starts them when none has
started and does nothing when all are done; it refuses nets that do not match the command."""

import re

import pytest
import torch

from conftest import TINY
from clustnet.checkpoint import load_checkpoint
from clustnet.errors import ClustNetError
from clustnet.layout import CLUSTNET, Experiment
from clustnet.modes import main
from clustnet.options import options_ini, parse_options, read_saved_options
from clustnet.resume import resume_hints


def command(mnist_dir, exp_id, epochs, *args, seeds=("1", "2")):
    """The tiny run of nets 1.. of `exp_id`, on the CPU (exact there), as a study script gives it."""
    return ["-c", "clust.config", "--exp_id", exp_id, "--ind_id", "1", "--resume", "True", "--epochs", str(epochs),
            "--batch_size", "8", "--data_dir", str(mnist_dir), *TINY, "--no_cuda", "True",
            *(["--seeds", *seeds] if seeds else []), *map(str, args)]


def files_under(root):
    """Every visible file under `root` and its content."""
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and not p.name.startswith(".")}


def assert_same_net(exp, reference, ind_id, epoch):
    """Weights, optimiser state, random state and per-image CSVs all identical; the same
    options in the .ini but for the experiment's name."""
    resumed, whole = (load_checkpoint(e.weights_path(ind_id, epoch)) for e in (exp, reference))
    assert resumed["epoch"] == whole["epoch"] == epoch
    assert resumed.keys() == whole.keys()
    for weights in ("model", "model_ema"):  # model_ema: with --weight_ema
        if weights in whole:
            assert resumed[weights].keys() == whole[weights].keys()
            assert all(torch.equal(resumed[weights][k], whole[weights][k]) for k in whole[weights]), weights
    assert resumed.get("ema_steps") == whole.get("ema_steps")
    assert resumed["optimisers"].keys() == whole["optimisers"].keys()
    for name, state in whole["optimisers"].items():
        assert resumed["optimisers"][name]["param_groups"] == state["param_groups"]
        assert resumed["optimisers"][name]["state"].keys() == state["state"].keys()
        for key, entry in state["state"].items():
            assert all(torch.equal(resumed["optimisers"][name]["state"][key][f], entry[f]) for f in entry), (name, key)
    assert torch.equal(resumed["generator"], whole["generator"])
    for train_set in (False, True):
        assert exp.scores_path(ind_id, epoch, train_set).read_bytes() == \
            reference.scores_path(ind_id, epoch, train_set).read_bytes()
    options = [vars(read_saved_options(e.ini_path(ind_id))) for e in (exp, reference)]
    assert options[0].pop("exp_id") == exp.exp_id and options[1].pop("exp_id") == reference.exp_id
    assert options[0] == options[1]


@pytest.mark.parametrize("seeds, args", [(("1", "2"), []), ((), ["--optim", "Adam", "--batch_period", "2"]),
                                         (("1", "2"), ["--cn_heads", "3", "--aug_rotation", "10", "--consistency", "1",
                                                       "--group_divers", "1", "--neighbours", "1",
                                                       "--neighbours_k", "3"]),
                                         (("1", "2"), ["--cn_heads", "3", "--heads_own_z", "True", "--aug_rotation",
                                                       "10", "--consistency", "1", "--group_divers", "1",
                                                       "--neighbours", "1", "--neighbours_k", "3",
                                                       "--weight_ema", "0.9"])],
                         ids=["two_seeds_sgd", "one_net_adam_alternating", "two_seeds_cn_heads_neighbours",
                              "two_seeds_heads_own_z_neighbours_weight_ema"])
def test_stopped_then_resumed_nets_equal_uninterrupted_ones(mnist_dir, output_root, capsys, seeds, args):
    main(command(mnist_dir, "whole", 2, *args, seeds=seeds))
    main(command(mnist_dir, "part", 1, *args, seeds=seeds))  # the first run of the command starts the nets
    whole, part = Experiment("whole"), Experiment("part")
    ind_ids = [1, 2] if seeds else [1]
    assert part.net_ids() == ind_ids and all(part.epochs(i) == [0, 1] for i in ind_ids)
    first_epoch = {i: part.weights_path(i, 1).read_bytes() for i in ind_ids}

    main(command(mnist_dir, "part", 2, *args, seeds=seeds))
    for ind_id in ind_ids:
        assert part.epochs(ind_id) == [0, 1, 2]
        assert part.weights_path(ind_id, 1).read_bytes() == first_epoch[ind_id]  # continued, not redone
        for epoch in (0, 1, 2):
            assert_same_net(part, whole, ind_id, epoch)

    capsys.readouterr()
    before = files_under(output_root)
    main(command(mnist_dir, "part", 2, *args, seeds=seeds))
    assert capsys.readouterr().out == (f"experiment part: net{'s' * (len(ind_ids) > 1)} "
                                       f"{', '.join(map(str, ind_ids))} finished epoch 2 (--epochs 2): "
                                       "nothing to train\n")
    assert files_under(output_root) == before


def test_nets_at_different_epochs_continue_from_the_last_one_all_finished(mnist_dir, output_root):
    main(command(mnist_dir, "whole", 2))
    main(command(mnist_dir, "part", 2))
    part = Experiment("part")
    part.weights_path(2, 2).unlink()  # net 2 stopped after epoch 1's weights, net 1 after epoch 2's
    part.weights_path(1, 2).write_bytes(b"not the epoch redone")
    main(command(mnist_dir, "part", 2))
    for ind_id in (1, 2):
        assert part.epochs(ind_id) == [0, 1, 2]
        assert_same_net(part, Experiment("whole"), ind_id, 2)


def test_the_command_starts_nets_whose_ini_is_there_but_no_epoch(mnist_dir, output_root):
    args = command(mnist_dir, "fresh", 1)
    exp = Experiment("fresh")
    exp.nets_dir.mkdir(parents=True)
    exp.ini_path(1).write_text(options_ini(parse_options(args)))  # a run stopped before epoch 0 was written
    main(args)
    assert exp.net_ids() == [1, 2] and exp.epochs(1) == exp.epochs(2) == [0, 1]


def test_refusals_name_the_problem_and_write_nothing(mnist_dir, output_root):
    main(command(mnist_dir, "r", 2))
    exp = Experiment("r")
    before = files_under(output_root)
    cases = [
        (command(mnist_dir, "r", 3, "--lr", "0.02"), rf"--lr 0.02: the net in {re.escape(str(exp.ini_path(1)))} was trained with "
                                                     r"0.01; .*only --epochs, .* may change"),
        (command(mnist_dir, "r", 3, "--clust", "3"), r"--clust 3: the net in .* was trained with 5"),
        (command(mnist_dir, "r", 3, seeds=("1", "3")), r"net 2 of experiment 'r' was trained with seed 2, "
                                                       r"this command gives it seed 3"),
        (command(mnist_dir, "r", 3, seeds=("1", "2", "3")), r"net 3 of experiment 'r' has no finished epoch "
                                                            r"while others of these 3 nets have"),
        (command(mnist_dir, "r", 3)[:4] + command(mnist_dir, "r", 3)[6:],  # without --ind_id 1
         r"--resume True needs --ind_id"),
        (command(mnist_dir, "r", 3, "--init", exp.weights_path(1, 1)), r"--resume True with --init .*choose one"),
    ]
    for args, message in cases:
        with pytest.raises(ClustNetError, match=message):
            main(list(map(str, args)))
    assert files_under(output_root) == before
    exp.weights_path(2, 2).unlink()
    exp.weights_path(2, 1).unlink()  # net 2 at epoch 0, net 1 at epoch 2
    before = files_under(output_root)
    with pytest.raises(ClustNetError, match=r"--epochs 1: net 1 of experiment 'r' is already at epoch 2"):
        main(command(mnist_dir, "r", 1))
    assert files_under(output_root) == before


def test_an_interrupted_group_is_told_how_to_continue_together(tmp_path):
    exp = Experiment("stop", root=tmp_path)
    exp.nets_dir.mkdir(parents=True)
    for ind_id, last in ((1, 3), (2, 2)):
        for epoch in range(last + 1):
            exp.weights_path(ind_id, epoch).touch()
    assert resume_hints(exp, [1, 2], CLUSTNET, 9).endswith(
        f"net 2 finished epoch 2: resume with python3 code/trainVal.py --init {exp.weights_path(2, 2)} --epochs 9; "
        "or continue them together: rerun the command with --ind_id 1 --resume True")
    assert "together" not in resume_hints(exp, [1], CLUSTNET, 9)
    assert "together" not in resume_hints(exp, [1, 2, 3], CLUSTNET, 9)  # net 3 has no epoch to continue from

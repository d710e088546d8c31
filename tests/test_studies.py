"""The study scripts (experiments/*.sh) and experiments/baselines.py, run end to end on tiny
generated data with tiny nets: each net of a study has its fixed number, a study's command run
again continues its nets (epoch 1 kept, epoch 2 added) instead of starting over or refusing,
and its figure is copied to $FIGURES."""

import os
import re
import subprocess
import sys

import pandas as pd
import pytest

from conftest import REPO, TINY
from clustnet.layout import DETECTNET, Experiment
from clustnet.options import parse_options, read_saved_options


def study(script, *args, **env):
    """experiments/<script> with its arguments and environment variables; stdout and stderr."""
    environment = dict(os.environ, PYTHON=sys.executable, EXTRA=" ".join(TINY))
    environment.update(env)
    for name in ("JOBS", "SEEDS", "ONLY", "CONFIG"):
        if name not in env:
            environment.pop(name, None)
    return subprocess.run(["bash", str(REPO / "experiments" / script), *map(str, args)], env=environment,
                          capture_output=True, text=True)


def weights_files(exp, ind_ids, epoch):
    return {ind_id: exp.weights_path(ind_id, epoch).read_bytes() for ind_id in ind_ids}


@pytest.mark.slow
def test_seeds_study_run_again_continues_its_nets(mnist_dir, output_root, tmp_path):
    figures = tmp_path / "figures"
    first = study("mnist_seeds.sh", mnist_dir, 1, SEEDS="3 5", FIGURES=figures)
    assert first.returncode == 0, first.stderr
    exp = Experiment("linDet2")
    assert exp.net_ids() == [1, 2] and exp.epochs(1) == exp.epochs(2) == [0, 1]
    assert [read_saved_options(exp.ini_path(i)).seed for i in (1, 2)] == [3, 5]
    assert (figures / "linDet2_testError.png").read_bytes() == exp.accuracy_plot_path().read_bytes()
    assert (figures / "linDet2_testError.csv").read_bytes() == exp.accuracy_table_path().read_bytes()
    epoch_1 = weights_files(exp, [1, 2], 1)

    again = study("mnist_seeds.sh", mnist_dir, 2, SEEDS="3 5", FIGURES=figures)
    assert again.returncode == 0, again.stderr
    assert "resumed from" in again.stdout and "net 1 epoch 2:" in again.stdout and "epoch 1:" not in again.stdout
    assert exp.epochs(1) == exp.epochs(2) == [0, 1, 2] and weights_files(exp, [1, 2], 1) == epoch_1
    assert sorted(pd.read_csv(exp.accuracy_table_path())["epoch"].unique()) == [0, 1, 2]

    done = study("mnist_seeds.sh", mnist_dir, 2, SEEDS="3 5", FIGURES=figures)
    assert done.returncode == 0 and "nets 1, 2 finished epoch 2 (--epochs 2): nothing to train" in done.stdout

    before = {p: p.stat().st_mtime_ns for p in exp.nets_dir.iterdir()}
    changed = study("mnist_seeds.sh", mnist_dir, 3, SEEDS="3 5", FIGURES=figures,
                    EXTRA=" ".join(TINY + ["--clust", "3"]))
    assert changed.returncode != 0 and "error: --clust 3: the net in" in changed.stderr
    assert {p: p.stat().st_mtime_ns for p in exp.nets_dir.iterdir()} == before


@pytest.mark.slow
def test_sweep_study_in_parallel_gives_each_setting_its_net(folder_dataset, output_root, tmp_path):
    """Net i of the sweep is the i-th (batch size, lr), as the runs started before --resume
    existed were numbered, so that the command continues them."""
    figures = tmp_path / "figures"
    first = study("cifar_bs_lr.sh", folder_dataset, 1, JOBS="2", FIGURES=figures)
    assert first.returncode == 0, first.stderr
    exp = Experiment("linDet_cifar")
    grid = [(4, 0.01), (4, 0.001), (64, 0.01), (64, 0.001), (256, 0.01), (256, 0.001)]
    assert exp.net_ids() == [1, 2, 3, 4, 5, 6]
    for ind_id, (batch_size, lr) in enumerate(grid, start=1):
        opts = read_saved_options(exp.ini_path(ind_id))
        assert (opts.batch_size, opts.lr, opts.dataset) == (batch_size, [lr], str(folder_dataset))
        assert exp.epochs(ind_id) == [0, 1]
    assert (figures / "linDet_cifar_testError.png").is_file()


@pytest.mark.slow
def test_gate_study_trains_a_variant_as_nets_1_to_5(mnist_dir, output_root, tmp_path):
    figures = tmp_path / "figures"
    # clust_best.config holds out 5000 images: on the tiny data, 40 (the same way, by EXTRA).
    first = study("gate_study.sh", "mnist", mnist_dir, 1, ONLY="no_views add_warmup", FIGURES=figures,
                  EXTRA=" ".join([*TINY, "--val_size", "40"]))
    assert first.returncode == 0, first.stderr
    exp = Experiment("gate_no_views_mnist")
    assert exp.net_ids() == [1, 2, 3, 4, 5] and all(exp.epochs(i) == [0, 1] for i in range(1, 6))
    opts = [read_saved_options(exp.ini_path(i)) for i in range(1, 6)]
    assert [o.seed for o in opts] == [1, 2, 3, 4, 5] and {(o.consistency, o.group_divers) for o in opts} == {(0, 5)}
    assert {o.val_size for o in opts} == {40}
    added = read_saved_options(Experiment("gate_add_warmup_mnist").ini_path(5))
    assert (added.contrastive, added.proj_size, added.warmup_epochs, added.consistency) == (1, 64, 3, 1)
    assert (figures / "gate_no_views_mnist_testError.png").is_file()


def test_every_gate_study_variant_is_a_valid_change_of_clust_best_config():
    """Each variant's options on top of clust_best.config pass the options' checks: a change of
    the config that a variant contradicts (e.g. one head with a z per head) fails here, not
    after an hour of the study."""
    script = (REPO / "experiments" / "gate_study.sh").read_text()
    variants = dict(re.findall(r'^ +\[(\w+)\]="([^"]*)"$', script, flags=re.MULTILINE))
    order = re.search(r"^ORDER=\(([^)]*)\)", script, flags=re.MULTILINE).group(1).split()
    assert sorted(order) == sorted(variants) and variants["best"] == "" and len(variants) > 10
    config = vars(parse_options(["-c", str(REPO / "clust_best.config")]))
    for name, extra in variants.items():
        opts = vars(parse_options(["-c", str(REPO / "clust_best.config"), *extra.split()]))
        changed = {key for key in config if opts[key] != config[key]}
        assert changed or name == "best", f"{name} changes nothing"
    one_head = parse_options(["-c", str(REPO / "clust_best.config"), *variants["one_head"].split()])
    assert (one_head.cn_heads, one_head.heads_own_z) == (1, False)


@pytest.mark.slow
def test_baselines_script_writes_its_table_and_continues_its_net(mnist_dir, output_root):
    command = [sys.executable, str(REPO / "experiments" / "baselines.py"), "--dataset", "MNIST",
               "--data_dir", str(mnist_dir), "--num_threads", "1"]
    first = subprocess.run([*command, "--epochs", "1"], capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    exp = Experiment("baselines_mnist")
    table = pd.read_csv(exp.vis_dir / "baselines.csv")
    assert list(table.columns) == ["method", "binary", "pos_clust", "neg_clust"]
    assert list(table["method"]) == ["chance (uniform random DN)", "k-means, raw pixels",
                                     "one expert (--pretrain True, 1 epochs)",
                                     "k-means, encoder features of the one-expert net"]
    values = table[["pos_clust", "neg_clust"]].to_numpy()
    assert ((values > 0) & (values <= 1)).all()
    assert 0 < table.loc[2, "binary"] <= 1 and table["binary"].isna().tolist() == [True, True, False, True]
    # The generated classes are squares at distinct places: k-means on the pixels finds them.
    assert (table.loc[1, ["pos_clust", "neg_clust"]] > 0.9).all()
    epoch_1 = exp.weights_path(1, 1, DETECTNET).read_bytes()

    again = subprocess.run([*command, "--epochs", "2"], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert exp.net_ids(DETECTNET) == [1] and exp.epochs(1, DETECTNET) == [0, 1, 2]
    assert exp.weights_path(1, 1, DETECTNET).read_bytes() == epoch_1
    assert pd.read_csv(exp.vis_dir / "baselines.csv").loc[2, "method"] == "one expert (--pretrain True, 2 epochs)"


def test_a_failed_parallel_run_stops_the_study_before_its_figure(mnist_dir, tmp_path):
    """JOBS=2 with a stand-in python that records each command and fails net 3's run: the
    other runs still start, then the script names the failure and makes no figure."""
    record = tmp_path / "calls"
    fake = tmp_path / "python"
    fake.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$*" >> "$RECORD"\n'
                    'case " $* " in *" --ind_id 3 "*) exit 1 ;; esac\n')
    fake.chmod(0o755)
    result = study("mnist_bs_lr.sh", mnist_dir, 7, JOBS="2", PYTHON=str(fake), RECORD=str(record),
                   FIGURES=str(tmp_path / "figures"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == ("error: a trainVal.py run failed (its error is above); "
                                                      "run this command again to continue")
    calls = record.read_text().splitlines()
    assert len(calls) == 6 and not any("processResults.py" in call for call in calls)
    settings = sorted((call.split()[call.split().index("--ind_id") + 1], call.split("--batch_size ")[1].split()[0],
                       call.split("--lr ")[1].split()[0]) for call in calls)
    assert settings == [("1", "4", "0.01"), ("2", "4", "0.001"), ("3", "64", "0.01"), ("4", "64", "0.001"),
                        ("5", "256", "0.01"), ("6", "256", "0.001")]
    assert all(call.rstrip().endswith("--resume True") and "--epochs 7 " in call and "--exp_id linDet " in call
               for call in calls)
    assert not (tmp_path / "figures").exists()

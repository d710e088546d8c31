"""Reliability: parallel runs in one experiment, Ctrl-C and SIGKILL then resume, bad input
(one line, non-zero exit, nothing written), numerical faults, determinism."""

import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
import torch
from PIL import Image

from conftest import CODE, REPO, TINY, run_cli
from clustnet.checkpoint import load_checkpoint
from clustnet.errors import ClustNetError, run_cli as run_in_process
from clustnet.layout import Experiment, atomic_path, read_metrics, read_scores
from clustnet.modes import main
from clustnet.options import read_config


def tiny_args(mnist_dir, exp_id, epochs=1, *args):
    return ["-c", "clust.config", "--exp_id", exp_id, "--epochs", str(epochs), "--batch_size", "8",
            "--data_dir", str(mnist_dir), *TINY, *map(str, args)]


def start(args):
    """trainVal.py in a subprocess that takes Ctrl-C (SIGINT) as a terminal's user would, even
    when the tests run as a background job, whose children inherit SIGINT ignored."""
    return subprocess.Popen([sys.executable, str(CODE / "trainVal.py"), *args], cwd=CODE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_for(condition, process, timeout=120):
    """Poll `condition()` until it holds; False if the process ended or time ran out first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if condition():
            return True
        time.sleep(0.002)
    return False


def visible_files(root):
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


def check_complete(path):
    """Raise if `path` is not a complete artifact of its kind."""
    if path.suffix == ".csv":
        read_metrics(path) if path.name.endswith("_metrics.csv") else read_scores(path)
    elif path.suffix == ".png":
        with Image.open(path) as image:
            image.verify()
    elif path.suffix == ".ini":
        read_config(path)
    else:
        load_checkpoint(path)


@pytest.mark.slow
def test_six_runs_started_together_get_six_distinct_nets(mnist_dir, output_root):
    rates = [f"0.0{k}" for k in range(1, 7)]
    processes = [start(tiny_args(mnist_dir, "sweep", 1, "--lr", lr)) for lr in rates]
    for process in processes:
        assert process.wait(timeout=300) == 0, process.stderr.read()
    exp = Experiment("sweep", root=output_root)
    assert exp.net_ids() == [1, 2, 3, 4, 5, 6]
    seen = []
    for ind_id in exp.net_ids():
        ini = exp.ini_path(ind_id).read_text()
        assert f"ind_id = {ind_id}\n" in ini and exp.epochs(ind_id) == [0, 1]
        assert load_checkpoint(exp.weights_path(ind_id, 1))["options"] == ini  # no net wrote over another's
        seen.append(re.search(r"^lr = (\S+)$", ini, re.M).group(1))
    assert sorted(seen) == rates
    result = run_cli("processResults.py", "--exp_id", "sweep", "--acc_evol", "lr")
    assert result.returncode == 0, result.stderr
    assert exp.accuracy_plot_path().is_file()


def test_a_taken_ind_id_is_refused_unless_overwrite(mnist_dir, output_root):
    main(tiny_args(mnist_dir, "ids", 1, "--ind_id", "3"))
    exp = Experiment("ids")
    before = {p: p.stat().st_mtime_ns for p in visible_files(output_root)}
    with pytest.raises(ClustNetError, match=r"net 3 already exists in experiment 'ids'.*--overwrite True"):
        main(tiny_args(mnist_dir, "ids", 1, "--ind_id", "3", "--lr", "0.02"))
    assert {p: p.stat().st_mtime_ns for p in visible_files(output_root)} == before
    main(tiny_args(mnist_dir, "ids", 1, "--ind_id", "3", "--lr", "0.02", "--overwrite", "True"))
    assert "lr = 0.02\n" in exp.ini_path(3).read_text() and exp.net_ids() == [3]


@pytest.mark.slow
def test_ctrl_c_says_where_to_resume_and_the_command_finishes_the_run(mnist_dir, output_root):
    exp = Experiment("stop", root=output_root)
    process = start(tiny_args(mnist_dir, "stop", 5, "--batch_size", "2"))
    assert wait_for(lambda: exp.weights_path(1, 1).exists(), process), "the run ended before epoch 1"
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 2 and "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    done = exp.epochs(1)[-1]
    command = re.search(r"resume with python3 (code/trainVal.py --init (\S+) --epochs 5)$", stderr.strip())
    assert command and command.group(2) == str(exp.weights_path(1, done)), stderr
    resumed = subprocess.run([sys.executable, *command.group(1).split()], cwd=REPO, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert exp.epochs(1) == [0, 1, 2, 3, 4, 5] and len(exp.scored_epochs(1)) == 6


def test_sigkill_while_writing_leaves_only_complete_files_then_resumes(mnist_dir, output_root):
    exp = Experiment("killed", root=output_root)
    process = start(tiny_args(mnist_dir, "killed", 4))

    def writing():  # a temporary file exists: the run is in the middle of writing one
        return exp.epochs(1) and any(p.name.endswith(".tmp") for p in output_root.rglob(".*"))
    assert wait_for(writing, process) or wait_for(lambda: exp.weights_path(1, 2).exists(), process)
    process.kill()
    process.wait()
    files = visible_files(output_root)
    assert files
    for path in files:
        check_complete(path)  # nothing truncated under a final name
    # A leftover temporary file is hidden and never read as an artifact.
    assert all(re.fullmatch(r"clustDetectNet1(\.ini|_epoch\d)", p.name) for p in exp.nets_dir.iterdir()
               if not p.name.startswith("."))
    last = exp.epochs(1)[-1]
    assert last < 4
    main(["--init", str(exp.weights_path(1, last)), "--epochs", "4"])
    assert exp.epochs(1) == [0, 1, 2, 3, 4] and exp.scored_epochs(1) == [0, 1, 2, 3, 4]


def test_a_failed_write_leaves_neither_the_file_nor_its_temporary(tmp_path):
    target = tmp_path / "nets" / "weights"
    with pytest.raises(OSError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half a file")
            raise OSError("disk full")
    assert list(target.parent.iterdir()) == []


def write(path, text):
    path.write_text(text)
    return str(path)


def no_images(folder_dataset):
    for image in (folder_dataset / "train").rglob("*.png"):
        image.unlink()
    return str(folder_dataset)


def unequal_classes(folder_dataset):
    for image in (folder_dataset / "test" / "class9").iterdir():
        image.unlink()
    (folder_dataset / "test" / "class9").rmdir()
    return str(folder_dataset)


# (case, command line given tmp_path, mnist_dir and folder_dataset, expected message)
BAD_INPUTS = [
    ("misspelt option in the file", lambda t, m, f: ["-c", write(t / "c.ini", "[default]\nbatchsize = 4\n")],
     r"unknown option 'batchsize' in .*c\.ini \(did you mean batch_size\?\)"),
    ("misspelt option on the command line", lambda t, m, f: ["--lr_cll", "0.1"],
     r"unknown option 'lr_cll' on the command line \(did you mean lr_cl\?\)"),
    ("wrong type", lambda t, m, f: ["--batch_size", "four"], r"option batch_size on the command line: 'four' is not"),
    ("wrong boolean", lambda t, m, f: ["--no_cuda", "maybe"], r"'maybe' is not a valid True or False"),
    ("negative lr", lambda t, m, f: ["--lr", "-0.1"], r"--lr -0.1: must be greater than 0"),
    ("batch size 0", lambda t, m, f: ["--batch_size", "0"], r"--batch_size 0: must be at least 1"),
    ("clust larger than a group", lambda t, m, f: ["--data_dir", m, "--clust", "6"],
     r"--clust 6 is larger than the number of classes in a group \(5 positive, 5 negative\)"),
    ("pos_classes naming a missing class", lambda t, m, f: ["--data_dir", m, "--pos_classes", "0", "12"],
     r"--pos_classes 12: the dataset has classes 0\.\.9 only"),
    ("unreadable config", lambda t, m, f: ["-c", str(t / "missing.config")], r"cannot read config file"),
    ("empty config", lambda t, m, f: ["-c", write(t / "empty.config", "")], r"has no \[default\] section"),
    ("config that is not INI", lambda t, m, f: ["-c", write(t / "bad.config", "lr = 0.1\n")],
     r"is not a valid INI file"),
    ("exp_id escaping upwards", lambda t, m, f: ["--exp_id", "../x"], r"exp_id '\.\./x' is not a plain folder name"),
    ("absolute exp_id", lambda t, m, f: ["--exp_id", "/abs"], r"exp_id '/abs' is not a plain folder name"),
    ("missing data, no network", lambda t, m, f: [], r"MNIST is not in .* and could not be downloaded"),
    ("unknown dataset", lambda t, m, f: ["--dataset", "MNSIT"], r"unknown dataset 'MNSIT'"),
    ("image folder without images", lambda t, m, f: ["--dataset", no_images(f)], r"holds no images"),
    ("image folder, unequal classes", lambda t, m, f: ["--dataset", unequal_classes(f)],
     r"train/ and test/ have different classes"),
    ("encoder too deep for the images", lambda t, m, f: ["--data_dir", m, "--encnblayers", "4"],
     r"--encnblayers 4 --enc_block conv5: 4 conv blocks shrink a 28x28 image to nothing"),
    ("weights file that is not one", lambda t, m, f: ["--data_dir", m, "--init_enc", write(t / "w", "text")],
     r"is not a ClustNet weights file"),
    ("weights file that is absent", lambda t, m, f: ["--data_dir", m, "--init_clu", str(t / "none")],
     r"no weights file .*none"),
    ("two modes at once", lambda t, m, f: ["--pretrain", "True", "--pretrain_cae", "True"], r"choose one mode"),
    ("a seed given twice", lambda t, m, f: ["--data_dir", m, "--seeds", "1", "2", "1"],
     r"^--seeds 1 2 1: seed 1 is given more than once; each seed trains one net"),
    ("a zoom of 100% or more", lambda t, m, f: ["--data_dir", m, "--aug_scale", "1"], r"^--aug_scale 1.0: must be below 1.0$"),
    ("an erased square larger than the image", lambda t, m, f: ["--data_dir", m, "--aug_erase", "1.5"],
     r"^--aug_erase 1.5: must be at most 1.0$"),
    ("a flip probability above 1", lambda t, m, f: ["--data_dir", m, "--aug_flip", "1.5"],
     r"^--aug_flip 1.5: must be at most 1.0$"),
    ("more mined neighbours than a group holds", lambda t, m, f: ["--data_dir", m, "--neighbours", "1",
                                                                  "--neighbours_k", "100000"],
     r"^--neighbours_k 100000: a binary group of the training set holds only \d+ images; it must hold more than k"),
    ("a negative term weight", lambda t, m, f: ["--data_dir", m, "--consistency", "-1"],
     r"^--consistency -1.0: must be at least 0"),
    ("separated mode without turns", lambda t, m, f: ["--data_dir", m, "--clu_train_mode", "separated"],
     r"^--clu_train_mode separated alternates CN and DN turns: give --batch_period 1 or more"),
    ("schedules of different lengths", lambda t, m, f: ["--data_dir", m, "--rand_prop_val_sched", "0.5",
                                                        "--rand_prop_epo_sched", "0", "1"],
     r"^--rand_prop_val_sched and --rand_prop_epo_sched need the same number of values \(1 and 2\)"),
    ("a probability above 1", lambda t, m, f: ["--data_dir", m, "--rand_prop_val_sched", "0.5", "1.5", "1",
                                               "--rand_prop_epo_sched", "0", "1", "2"],
     r"^--rand_prop_val_sched 1.5: must be at most 1.0$"),
]


@pytest.fixture
def no_network(monkeypatch):
    """Every URL torchvision opens fails at once, as offline, whether or not this machine has
    network (so a test never downloads MNIST); returns the URLs it tried."""
    tried = []

    def offline(request, *args, **kwargs):
        tried.append(getattr(request, "full_url", request))
        raise urllib.error.URLError("network disabled by the test")
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    return tried


@pytest.mark.parametrize("make_args, message", [case[1:] for case in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_is_one_error_and_writes_nothing(make_args, message, tmp_path, mnist_dir, folder_dataset,
                                                   output_root, no_network):
    args = make_args(tmp_path, str(mnist_dir), folder_dataset)
    with pytest.raises(ClustNetError, match=message):
        main(["--exp_id", "bad", *TINY, *args])
    assert list(output_root.iterdir()) == []  # no nets/, results/, vis/, not even data/


def test_missing_data_without_network_is_one_line_and_writes_nothing(output_root, no_network, capsys):
    status = run_in_process(main, ["-c", "clust.config", "--exp_id", "offline", *TINY])
    out, err = capsys.readouterr()
    assert status == 2 and out == ""
    assert re.fullmatch(rf"error: MNIST is not in {re.escape(str(output_root / 'data'))} and could not be "
                        r"downloaded \(RuntimeError: Error downloading train-images-idx3-ubyte\.gz:\); put it "
                        r"there or pass --data_dir\n", err), err
    assert no_network and all(url.endswith("train-images-idx3-ubyte.gz") for url in no_network)  # it did try
    assert list(output_root.iterdir()) == []  # the download's folders are removed again


def test_bad_input_on_the_command_line_is_one_stderr_line_and_exit_2(output_root):
    result = run_cli("trainVal.py", "-c", "clust.config", "--exp_id", "bad", "--epochs", "0")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == "error: --epochs 0: must be at least 1\n"
    assert list(output_root.iterdir()) == []


def test_a_diverging_loss_stops_the_run_and_keeps_the_last_good_epoch(mnist_dir, output_root):
    with pytest.raises(ClustNetError, match=r"the loss became (nan|inf) at epoch 1, step \d+ .*files of epoch 0"):
        main(tiny_args(mnist_dir, "nan", 2, "--lr", "1e30"))
    exp = Experiment("nan")
    assert exp.epochs(1) == [0] and exp.scored_epochs(1) == [0] and exp.scored_epochs(1, "train") == [0]
    for path in visible_files(output_root):
        check_complete(path)
        assert not re.search(r"(epoch|_)1(\.csv|_train\.csv|\.png)?$", path.name), path


def test_same_options_and_seed_give_identical_files_on_the_cpu(mnist_dir, output_root):
    for exp_id, seed in (("a", 5), ("b", 5), ("c", 6)):
        main(tiny_args(mnist_dir, exp_id, 1, "--seed", seed, "--no_cuda", "True"))
    a, b, c = (Experiment(exp_id) for exp_id in "abc")
    for epoch in (0, 1):
        for train_set in (False, True):
            assert a.scores_path(1, epoch, train_set).read_bytes() == b.scores_path(1, epoch, train_set).read_bytes()
        first, second = (load_checkpoint(exp.weights_path(1, epoch)) for exp in (a, b))
        assert all(torch.equal(first["model"][k], second["model"][k]) for k in first["model"])
    assert a.scores_path(1, 1).read_bytes() != c.scores_path(1, 1).read_bytes()  # the seed matters

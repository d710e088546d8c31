"""What a training CLI must survive: an output root it cannot write in, a weights file cut
short, and several runs sharing the machine's cores (speed.set_threads, and the measurement of
experiments/parallel_runs.py)."""

import os
import re
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

from conftest import REPO, TINY, run_cli
from clustnet import speed
from clustnet.checkpoint import load_checkpoint
from clustnet.errors import ClustNetError
from clustnet.layout import Experiment
from clustnet.modes import main


def tiny_args(mnist_dir, exp_id="x", epochs=1):
    return ["-c", "clust.config", "--exp_id", exp_id, "--epochs", str(epochs), "--batch_size", "16",
            "--data_dir", str(mnist_dir), *TINY]


def everything_under(folder):
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


def test_an_output_root_under_a_file_is_one_line_and_creates_nothing(mnist_dir, tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    before = everything_under(tmp_path)
    root = blocker / "sub"
    result = run_cli("trainVal.py", *tiny_args(mnist_dir), env=dict(os.environ, CLUSTNET_ROOT=str(root)))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (f"error: cannot create the output folder {root}: Not a directory (the output root "
                             f"is {root}: set CLUSTNET_ROOT to a folder you can write in)\n")
    assert everything_under(tmp_path) == before and blocker.read_text() == "not a folder"


def test_an_output_folder_that_cannot_hold_files_removes_the_folders_made_before_it(mnist_dir, output_root):
    (output_root / "results").mkdir()
    (output_root / "results" / "x").write_text("a file where results/x/ should be")
    with pytest.raises(ClustNetError, match=rf"^cannot write in the output folder {re.escape(str(output_root))}"
                                            r"/results/x: Not a directory \(the output root is "):
        main(tiny_args(mnist_dir))
    assert everything_under(output_root) == ["results", "results/x"]  # nets/ and nets/x are gone again


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder: the file variant above "
                                              "covers the error for root")
def test_a_read_only_output_root_is_one_line_and_creates_nothing(mnist_dir, output_root):
    output_root.chmod(0o555)
    try:
        result = run_cli("trainVal.py", *tiny_args(mnist_dir))
    finally:
        output_root.chmod(0o755)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: cannot create the output folder {output_root / 'nets'}: "
                                    "Permission denied") and len(result.stderr.splitlines()) == 1
    assert list(output_root.iterdir()) == []


def cut_in_half(path):
    content = path.read_bytes()
    path.write_bytes(content[:len(content) // 2])


def test_a_weights_file_cut_short_is_named_with_the_command_that_resumes_from_the_epoch_before(mnist_dir):
    main(tiny_args(mnist_dir, "cut", 3))
    exp = Experiment("cut")
    cut_in_half(exp.weights_path(1, 3))
    with pytest.raises(ClustNetError) as error:
        main(["--init", str(exp.weights_path(1, 3)), "--epochs", "4"])
    message = str(error.value)
    assert re.fullmatch(rf"weights file {re.escape(str(exp.weights_path(1, 3)))} is cut short \(truncated: \d+ "
                        r"bytes, its end is missing\); the last complete epoch of this net is 2: resume with "
                        r"python3 code/trainVal.py --init \S+ --epochs 3 --overwrite True", message), message
    command = message.split("resume with python3 code/trainVal.py ")[1].split()
    assert command[1] == str(exp.weights_path(1, 2))
    main(command)  # the printed command redoes epoch 3
    assert exp.epochs(1) == [0, 1, 2, 3] and load_checkpoint(exp.weights_path(1, 3))["epoch"] == 3


def test_a_first_weights_file_cut_short_or_empty_has_no_epoch_to_resume_from(tmp_path, mnist_dir, output_root):
    main(tiny_args(mnist_dir, "cut", 1))
    exp = Experiment("cut")
    first = exp.weights_path(1, 0)
    cut_in_half(first)
    with pytest.raises(ClustNetError, match=r"is cut short .*; no complete earlier epoch of this net is beside it$"):
        load_checkpoint(first)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with pytest.raises(ClustNetError, match=r"^weights file .*empty is cut short \(truncated: 0 bytes"):
        load_checkpoint(empty)
    text = tmp_path / "text"
    text.write_text("not weights")
    with pytest.raises(ClustNetError, match=r"text is not a ClustNet weights file"):
        load_checkpoint(text)


@pytest.fixture
def threads_kept():
    """Put PyTorch's thread count back after a test that changes it."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_set_threads_shares_the_cores_evenly_among_the_runs(monkeypatch, threads_kept):
    monkeypatch.setattr(speed, "DEFAULT_THREADS", 4)
    for others, expected in ((0, 4), (1, 2), (2, 1), (3, 1), (9, 1)):
        monkeypatch.setattr(speed, "trainval_pids", lambda others=others: set(range(others)))
        assert speed.set_threads(0) == expected == torch.get_num_threads()
    assert speed.set_threads(3) == 3 == torch.get_num_threads()  # --num_threads wins


def test_a_running_trainval_process_is_counted_and_a_stopped_one_is_not():
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "/somewhere/trainVal.py"])
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "notTrainVal.py"])
    try:
        time.sleep(0.5)  # until the command line is the new program's
        pids = speed.trainval_pids()
        assert sleeper.pid in pids and other.pid not in pids and os.getpid() not in pids
        sleeper.send_signal(signal.SIGSTOP)
        time.sleep(0.2)
        assert sleeper.pid not in speed.trainval_pids()
    finally:
        for process in (sleeper, other):
            process.kill()
            process.wait()


@pytest.mark.slow
def test_parallel_runs_prints_the_table(mnist_dir, tmp_path):
    csv = tmp_path / "parallel.csv"
    result = subprocess.run([sys.executable, str(REPO / "experiments" / "parallel_runs.py"), "--data_dir",
                             str(mnist_dir), "--runs", "1", "2", "--settings", "shared", "one_thread",
                             "--wait_quiet", "0", "--csv", str(csv)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(csv)
    assert list(table.setting) == ["shared", "shared", "one_thread", "one_thread"] and list(table.runs) == [1, 2, 1, 2]
    assert (table.wall_s > 0).all() and (table.cpu_s > 0).all()
    alone = table.set_index(["setting", "runs"]).wall_s
    cores = int(re.search(r"(\d+) cores", result.stdout).group(1))
    assert table.ideal_s.iloc[1] == pytest.approx(2 * alone["shared", 1] / min(2, cores))

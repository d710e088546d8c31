"""The background writer (writer.py): the files of an epoch written while the next trains,
in order, the weights last; a failed write is one line, exit status 2, no partial file;
Ctrl-C waits for it; kill -9 leaves complete files, and the resumed run equals an
uninterrupted one."""

import errno
import os
import re
import resource
import signal
import subprocess
import sys
import threading
import time

import pandas as pd
import pytest
import torch

from conftest import CODE, REPO, TINY
from clustnet.checkpoint import load_checkpoint, write_bytes
from clustnet.errors import ClustNetError
from clustnet.layout import CLUSTNET, DETECTNET, Experiment
from clustnet.modes import main
from clustnet.writer import EpochWriter
from test_reliability import check_complete, visible_files


def tiny_args(mnist_dir, exp_id, epochs, *args):
    return ["-c", "clust.config", "--exp_id", exp_id, "--epochs", str(epochs), "--batch_size", "8",
            "--data_dir", str(mnist_dir), "--no_cuda", "True", *TINY, *map(str, args)]


def hidden_temporaries(root):
    return [p for p in root.rglob(".*.tmp")]


def fake_epoch(exp, epoch, log, delay=0.0):
    """Two result files then the weights file of net 1 after `epoch`, each write logged."""
    def write(path, content):
        time.sleep(delay)
        write_bytes(path, content)
        log.append((path.name, threading.current_thread().name))
    paths = [exp.scores_path(1, epoch, True), exp.scores_path(1, epoch), exp.weights_path(1, epoch)]
    return [(path, lambda path=path: write(path, b"x")) for path in paths]


def test_writes_run_in_a_background_thread_in_order_epoch_after_epoch(tmp_path):
    exp, log = Experiment("order", root=tmp_path), []
    with EpochWriter(exp, [1], CLUSTNET, 3) as writer:
        for epoch in range(3):
            start = time.perf_counter()
            writer.submit(fake_epoch(exp, epoch, log, delay=0.05))
            handed_over = time.perf_counter() - start
            if epoch == 0:
                assert handed_over < 0.05  # the training thread does not wait for the writes
    # Every write done when the block ends, in the order given, none in the training thread.
    assert [name for name, _ in log] == [p.name for e in range(3) for p, _ in fake_epoch(exp, e, [])]
    assert all(thread.startswith("clustnet-writer") for _, thread in log)
    assert exp.epochs(1) == [0, 1, 2]


def test_ctrl_c_waits_for_the_epoch_being_written_then_names_it(tmp_path):
    exp, log = Experiment("stop", root=tmp_path), []
    with pytest.raises(ClustNetError) as raised:
        with EpochWriter(exp, [1], CLUSTNET, 9) as writer:
            writer.submit(fake_epoch(exp, 0, log))
            writer.submit(fake_epoch(exp, 1, log, delay=0.2))
            raise KeyboardInterrupt  # while epoch 1's files are being written
    assert exp.epochs(1) == [0, 1] and len(log) == 6
    assert str(raised.value) == (f"interrupted; net 1 finished epoch 1: resume with python3 code/trainVal.py "
                                 f"--init {exp.weights_path(1, 1)} --epochs 9")


def test_ctrl_c_during_the_last_writes_is_still_an_interruption(tmp_path):
    """Training is over and only writes remain: Ctrl-C skips the files not started, and the
    run still ends as interrupted, naming the last complete epoch (it once ended as a success)."""
    exp, log = Experiment("late", root=tmp_path), []
    timer = threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGINT))
    # Python's Ctrl-C handler, also when the tests run as a background job (SIGINT ignored).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(ClustNetError) as raised:
            with EpochWriter(exp, [1], CLUSTNET, 9) as writer:
                writer.submit(fake_epoch(exp, 0, log))
                writer.submit(fake_epoch(exp, 1, log, delay=0.3))
                timer.start()
        timer.join()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert exp.epochs(1) == [0] and len(log) == 4  # epoch 1: the file being written, no more
    assert str(raised.value) == (f"interrupted; net 1 finished epoch 0: resume with python3 code/trainVal.py "
                                 f"--init {exp.weights_path(1, 0)} --epochs 9")


def test_a_bug_in_a_write_is_not_hidden(tmp_path):
    exp = Experiment("bug", root=tmp_path)
    with pytest.raises(ZeroDivisionError):
        with EpochWriter(exp, [1], CLUSTNET, 2) as writer:
            writer.submit([(exp.weights_path(1, 0), lambda: 1 / 0)])


def failing_to_csv(monkeypatch, final_name):
    """DataFrame.to_csv fails with a full disk when writing `final_name`, after half a file."""
    real_to_csv = pd.DataFrame.to_csv

    def to_csv(frame, path, *args, **kwargs):
        if str(path).split("/")[-1].startswith(f".{final_name}."):  # atomic_path's temporary name
            with open(path, "w") as file:
                file.write("origTarg,targ,pred_0\n1,1,-0.")
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_to_csv(frame, path, *args, **kwargs)
    monkeypatch.setattr(pd.DataFrame, "to_csv", to_csv)


@pytest.mark.parametrize("kind", [CLUSTNET, DETECTNET])
def test_a_full_disk_stops_the_run_naming_the_file_and_the_last_complete_epoch(mnist_dir, output_root, monkeypatch,
                                                                               kind):
    exp = Experiment("full")
    failing = exp.scores_path(1, 2, "test", kind)
    failing_to_csv(monkeypatch, failing.name)
    extra = ["--pretrain", "True"] if kind == DETECTNET else []
    with pytest.raises(ClustNetError) as raised:
        main(tiny_args(mnist_dir, "full", 4, *extra))
    assert str(raised.value) == (f"cannot write {failing}: No space left on device; net 1 finished epoch 1: "
                                 f"resume with python3 code/trainVal.py --init {exp.weights_path(1, 1, kind)} "
                                 f"--epochs 4")
    assert exp.epochs(1, kind) == [0, 1]  # epoch 2 is not complete: no weights
    assert not failing.exists() and hidden_temporaries(output_root) == []
    for path in visible_files(output_root):
        check_complete(path)
        assert not re.search(r"epoch3|_3\.png", path.name), path  # the run stopped


def limited_file_size(limit):
    """For a subprocess: files larger than `limit` bytes cannot be written (EFBIG)."""
    def limit_it():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write fails instead of killing the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return limit_it


@pytest.mark.slow
def test_a_write_refused_by_the_system_is_one_line_and_exit_2_then_the_command_resumes(mnist_dir, output_root):
    main(tiny_args(mnist_dir, "big", 1))
    exp = Experiment("big", root=output_root)
    assert max(p.stat().st_size for p in exp.results_dir.iterdir()) > 8000 > exp.ini_path(1).stat().st_size
    # The resumed run can rewrite its .ini but no epoch's scores CSV.
    result = subprocess.run([sys.executable, str(CODE / "trainVal.py"), "--init", str(exp.weights_path(1, 1)),
                             "--epochs", "3"], cwd=CODE, capture_output=True, text=True,
                            preexec_fn=limited_file_size(8000))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    failing = exp.scores_path(1, 2, "train")
    command = f"code/trainVal.py --init {exp.weights_path(1, 1)} --epochs 3"
    assert result.stderr == (f"error: cannot write {failing}: File too large; net 1 finished epoch 1: "
                             f"resume with python3 {command}\n")
    assert not failing.exists() and hidden_temporaries(output_root) == [] and exp.epochs(1) == [0, 1]
    resumed = subprocess.run([sys.executable, *command.split()], cwd=REPO, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert exp.epochs(1) == [0, 1, 2, 3] and exp.scored_epochs(1, "train") == [0, 1, 2, 3]


def test_kill_9_while_the_writer_works_leaves_complete_epochs_and_the_resume_is_exact(mnist_dir, output_root):
    args = tiny_args(mnist_dir, "killed", 4)
    process = subprocess.Popen([sys.executable, str(CODE / "trainVal.py"), *args], cwd=CODE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    exp = Experiment("killed", root=output_root)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        # Epoch 1 or later is being written: its temporary file is there, the training thread goes on.
        if exp.epochs(1) and any(re.search(r"epoch[123]", p.name) for p in hidden_temporaries(output_root)):
            break
        time.sleep(0.001)
    process.kill()
    process.wait()
    files = visible_files(output_root)
    for path in files:
        check_complete(path)
    for epoch in exp.epochs(1):  # the weights were written last: the epoch's other files are there
        assert {exp.scores_path(1, epoch), exp.scores_path(1, epoch, True), exp.confusion_path(1, epoch, True),
                exp.confusion_path(1, epoch, False)} <= set(files)
    last = exp.epochs(1)[-1]
    assert last < 4
    main(["--init", str(exp.weights_path(1, last)), "--epochs", "4"])
    main(tiny_args(mnist_dir, "whole", 4))
    whole = Experiment("whole")
    for epoch in range(5):
        for train_set in (False, True):
            assert exp.scores_path(1, epoch, train_set).read_bytes() == \
                whole.scores_path(1, epoch, train_set).read_bytes()
        resumed, reference = load_checkpoint(exp.weights_path(1, epoch)), load_checkpoint(whole.weights_path(1, epoch))
        assert all(torch.equal(resumed["model"][k], reference["model"][k]) for k in reference["model"])
        assert torch.equal(resumed["generator"], reference["generator"])

"""experiments/slurm_array.sh without SLURM: its usage errors, the checks it makes before
submitting (PYTHON runs, every task's options parse), and the sbatch commands it issues,
recorded by a fake `sbatch` put first on PATH; the array task's script is then run by hand, as
SLURM would run it, with a fake python that records the trainVal.py command line, and the
results job's script after it, which reports the tasks that failed."""

import os
import subprocess
import sys

import pytest

from conftest import REPO

SCRIPT = REPO / "experiments" / "slurm_array.sh"

# Records each call's arguments (one per line, NUL-separated) in $FAKE_DIR/sbatch<n>, and
# prints a job id as `sbatch --parsable` does: 1001, 1002, ...
FAKE_SBATCH = """#!/usr/bin/env bash
n=$(( $(ls "$FAKE_DIR" | grep -c '^sbatch') + 1 ))
printf '%s\\0' "$@" > "$FAKE_DIR/sbatch$n"
echo "$((1000 + n))"
"""
# Records its arguments in $FAKE_DIR/python; a trainVal.py command line with `--lr -1` fails
# as trainVal.py does (an error line, exit status 2); the check before submitting passes.
FAKE_PYTHON = """#!/usr/bin/env bash
printf '%s\\0' "$@" > "$FAKE_DIR/python"
if [[ "$1" == */trainVal.py && " $* " == *" --lr -1 "* ]]; then
    echo "error: --lr -1.0: must be greater than 0" >&2; exit 2
fi
"""


@pytest.fixture
def fake(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("sbatch", FAKE_SBATCH), ("python", FAKE_PYTHON)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    record = tmp_path / "record"
    record.mkdir()
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", FAKE_DIR=str(record),
               PYTHON=str(bin_dir / "python"))
    for name in ("SBATCH_OPTS", "ARRAY_OPTS", "MAX_RUNNING", "CONFIG", "SLURM_CPUS_PER_TASK"):
        env.pop(name, None)
    return env, record, bin_dir


def submit(env, *args, cwd=None):
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, cwd=cwd, capture_output=True, text=True)


def recorded(path):
    return path.read_text().split("\0")[:-1]


def run_task(folder, env, task, **extra):
    """Array task `task` as SLURM runs it, its output into task_<task>.log."""
    with open(folder / f"task_{task}.log", "w") as log:
        return subprocess.run(["bash", str(folder / "array_task.sh")], env=dict(env, SLURM_ARRAY_TASK_ID=str(task),
                              **extra), stdout=log, stderr=subprocess.STDOUT).returncode


def run_results(folder, env):
    return subprocess.run(["bash", str(folder / "results.sh"), "1001"], env=env, capture_output=True, text=True)


@pytest.mark.parametrize("args", [
    [],
    ["--exp_id", "s", "--acc_evol", "lr"],                                      # no tasks
    ["--exp_id", "s", "--sweep", "lr", "0.1"],                                   # no --acc_evol
    ["--sweep", "lr", "0.1", "--acc_evol", "lr"],                                # no --exp_id
    ["--exp_id", "s", "--sweep", "lr", "--acc_evol", "lr"],                      # no values
    ["--exp_id", "s", "--tasks", "missing.txt", "--acc_evol", "lr"],
    ["--exp_id", "s", "--tasks", "t", "--sweep", "lr", "1", "--acc_evol", "lr"],
    ["--exp_id", "s", "--sweep", "lr", "0.1", "--acc_evol", "lr", "--epochs", "1"],  # shared options before --
])
def test_bad_usage_is_one_error_line_and_status_2(fake, args):
    env, record, _ = fake
    result = submit(env, *args)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "usage:" in lines[0]
    assert not list(record.iterdir())  # nothing submitted


def test_an_existing_experiment_is_refused(fake, output_root):
    env, record, _ = fake
    (output_root / "nets" / "s").mkdir(parents=True)
    result = submit(env, "--exp_id", "s", "--sweep", "lr", "0.1", "--acc_evol", "lr")
    assert result.returncode == 2 and "experiment s exists" in result.stderr
    assert not list(record.iterdir())


def test_a_sweep_submits_an_array_then_processresults_after_it(fake, output_root):
    env, record, bin_dir = fake
    env["MAX_RUNNING"] = "2"
    env["ARRAY_OPTS"] = "--cpus-per-task=3"
    result = submit(env, "--exp_id", "s", "--sweep", "lr", "0.01", "0.005", "0.001",
                    "--acc_evol", "lr", "batch_size", "--", "--epochs", "1", "--data_dir", "a b")
    assert result.returncode == 0, result.stderr
    assert "array job 1001" in result.stdout and "results job 1002" in result.stdout
    assert "squeue -u " in result.stdout and "sacct -j 1001,1002" in result.stdout
    assert "task_<i>.log ends with the reason" in result.stdout
    folder = output_root / "slurm" / "s"
    assert (folder / "tasks.txt").read_text() == "--lr 0.01\n--lr 0.005\n--lr 0.001\n"

    assert recorded(record / "sbatch1") == [
        "--parsable", "--cpus-per-task=3", "--job-name=s", "--array=0-2%2",
        f"--output={folder}/task_%a.log", f"{folder}/array_task.sh"]
    assert recorded(record / "sbatch2") == [
        "--parsable", "--job-name=s_results", "--dependency=afterany:1001",
        f"--output={folder}/results.log", f"{folder}/results.sh", "1001"]

    # Array task 1, as SLURM runs it: the shared options, then line 2 of tasks.txt.
    assert run_task(folder, env, 1, SLURM_CPUS_PER_TASK="3", CLUSTNET_ROOT="/elsewhere") == 0
    assert recorded(record / "python") == [
        str(REPO / "code" / "trainVal.py"), "-c", "clust.config", "--progress", "False", "--exp_id", "s",
        "--num_threads", "3", "--epochs", "1", "--data_dir", "a b", "--lr", "0.005"]
    assert (folder / "task_1.status").read_text() == "0\n"

    for task in (0, 2):
        assert run_task(folder, env, task) == 0
    run = run_results(folder, env)
    assert run.returncode == 0 and run.stdout == "", run.stdout + run.stderr
    assert recorded(record / "python") == [
        str(REPO / "code" / "processResults.py"), "--exp_id", "s", "--acc_evol", "lr", "batch_size"]


def test_the_results_job_names_each_failed_task_its_reason_and_log(fake, output_root):
    env, record, _ = fake
    assert submit(env, "--exp_id", "f", "--sweep", "lr", "0.01", "-1", "0.001", "--acc_evol", "lr").returncode == 0
    folder = output_root / "slurm" / "f"
    assert run_task(folder, env, 0) == 0
    assert run_task(folder, env, 1) == 2  # its trainVal.py fails
    # Task 2 never wrote its exit status: cancelled, or killed at its time limit.
    run = run_results(folder, env)
    assert run.returncode == 1
    assert run.stdout.splitlines() == [
        f"task 1 failed (exit status 2): --lr -1; log {folder}/task_1.log, its last line: "
        "error: --lr -1.0: must be greater than 0",
        "task 2 failed (no exit status: killed or cancelled (time limit, memory, scancel, node failure; "
        f"sacct -j 1001_2 says which)): --lr 0.001; log {folder}/task_2.log",
        "error: 2 of 3 tasks failed (above); the accuracy curves show the other tasks' nets"]
    assert recorded(record / "python")[:3] == [str(REPO / "code" / "processResults.py"), "--exp_id", "f"]


def test_the_results_job_plots_nothing_when_every_task_failed(fake, output_root):
    env, record, _ = fake
    assert submit(env, "--exp_id", "a", "--sweep", "lr", "-1", "--acc_evol", "lr").returncode == 0
    folder = output_root / "slurm" / "a"
    assert run_task(folder, env, 0) == 2
    run = run_results(folder, env)
    assert run.returncode == 1 and run.stdout.splitlines()[-1] == "error: all 1 tasks failed (above): no nets to plot"
    assert "processResults.py" not in recorded(record / "python")[0]


@pytest.mark.parametrize("args, message", [
    (["--sweep", "lr", "0.01", "-1", "--acc_evol", "lr"],
     "error: task 1 (--lr -1): --lr -1.0: must be greater than 0; nothing was submitted"),
    (["--sweep", "momentum", "nan", "--acc_evol", "momentum"],
     "error: task 0 (--momentum nan): --momentum nan: must be a finite number; nothing was submitted"),
    (["--sweep", "lr", "0.01", "--acc_evol", "lr", "--", "--epochz", "1"],
     "error: task 0 (--lr 0.01): unknown option 'epochz' on the command line (did you mean epochs?); "
     "nothing was submitted"),
])
def test_every_task_is_parsed_before_anything_is_submitted(fake, output_root, args, message):
    env, record, _ = fake
    env["PYTHON"] = sys.executable  # the real one: the tasks' options are parsed as trainVal.py parses them
    result = submit(env, "--exp_id", "p", *args)
    assert result.returncode == 2 and result.stderr.splitlines() == [message]
    assert not list(record.iterdir()) and not (output_root / "slurm").exists()


def test_the_tasks_are_parsed_with_the_real_python_and_then_submitted(fake, output_root):
    env, record, _ = fake
    env["PYTHON"] = sys.executable
    result = submit(env, "--exp_id", "ok", "--sweep", "lr", "0.01", "0.001", "--acc_evol", "lr", "--", "--epochs", "2")
    assert result.returncode == 0, result.stderr
    assert "--array=0-1" in recorded(record / "sbatch1")


@pytest.mark.parametrize("python, message", [
    ("/nonexistent/python3", "error: PYTHON=/nonexistent/python3: no such command"),
    ("broken", "error: PYTHON={bin}/broken failed (exit status 1): SyntaxError: invalid syntax"),
    ("no_torch", "error: PYTHON={bin}/no_torch cannot import ClustNet's code: ModuleNotFoundError: "
                 "No module named 'torch'"),
])
def test_a_python_that_cannot_run_the_tasks_is_refused_before_submitting(fake, output_root, python, message):
    env, record, bin_dir = fake
    scripts = {"broken": "#!/bin/sh\necho 'Traceback (most recent call last):'\necho 'SyntaxError: invalid syntax'\n"
                         "exit 1\n",
               # This interpreter without the packages of the environment: no PyTorch.
               "no_torch": f"#!/bin/sh\nexec {sys.executable} -S -I \"$@\"\n"}
    if python in scripts:
        (bin_dir / python).write_text(scripts[python])
        (bin_dir / python).chmod(0o755)
        python = str(bin_dir / python)
    env["PYTHON"] = python
    result = submit(env, "--exp_id", "p", "--sweep", "lr", "0.01", "--acc_evol", "lr")
    assert result.returncode == 2 and result.stderr.splitlines() == [message.format(bin=bin_dir)]
    assert not list(record.iterdir()) and not (output_root / "slurm").exists()


def test_a_tasks_file_gives_one_task_per_option_line(fake, output_root, tmp_path):
    env, record, _ = fake
    tasks = tmp_path / "tasks.txt"
    tasks.write_text("# seeds in two groups\n--seeds 1 2 3 4\n\n  --seeds 5 6 7 8 --lr 0.001\n")
    result = submit(env, "--exp_id", "g", "--tasks", str(tasks), "--acc_evol", "seed")
    assert result.returncode == 0, result.stderr
    assert "--array=0-1" in recorded(record / "sbatch1")
    assert run_task(output_root / "slurm" / "g", env, 1) == 0
    assert recorded(record / "python")[-9:] == ["--exp_id", "g", "--seeds", "5", "6", "7", "8", "--lr", "0.001"]
    assert "--num_threads" not in recorded(record / "python")


def test_a_refused_array_job_is_reported(fake):
    env, record, bin_dir = fake
    (bin_dir / "sbatch").write_text("#!/usr/bin/env bash\necho 'sbatch: error: invalid partition' >&2\nexit 1\n")
    result = submit(env, "--exp_id", "r", "--sweep", "seed", "1", "2", "--acc_evol", "seed")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith("error: sbatch refused the array job")

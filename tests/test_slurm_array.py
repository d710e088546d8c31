"""experiments/slurm_array.sh without SLURM: its usage errors, and the sbatch commands it issues,
recorded by a fake `sbatch` put first on PATH; the array task's script is then run by hand, as
SLURM would run it, with a fake python that records the trainVal.py command line."""

import os
import subprocess
from pathlib import Path

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
# Records its arguments in $FAKE_DIR/python.
FAKE_PYTHON = """#!/usr/bin/env bash
printf '%s\\0' "$@" > "$FAKE_DIR/python"
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
    folder = output_root / "slurm" / "s"
    assert (folder / "tasks.txt").read_text() == "--lr 0.01\n--lr 0.005\n--lr 0.001\n"

    assert recorded(record / "sbatch1") == [
        "--parsable", "--cpus-per-task=3", "--job-name=s", "--array=0-2%2",
        f"--output={folder}/task_%a.log", f"{folder}/array_task.sh"]
    assert recorded(record / "sbatch2") == [
        "--parsable", "--job-name=s_results", "--dependency=afterok:1001", "--kill-on-invalid-dep=yes",
        f"--output={folder}/results.log", f"{folder}/results.sh"]

    # Array task 1, as SLURM runs it: the shared options, then line 2 of tasks.txt.
    task_env = dict(env, SLURM_ARRAY_TASK_ID="1", SLURM_CPUS_PER_TASK="3", CLUSTNET_ROOT="/elsewhere")
    run = subprocess.run(["bash", str(folder / "array_task.sh")], env=task_env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert recorded(record / "python") == [
        str(REPO / "code" / "trainVal.py"), "-c", "clust.config", "--progress", "False", "--exp_id", "s",
        "--num_threads", "3", "--epochs", "1", "--data_dir", "a b", "--lr", "0.005"]

    run = subprocess.run(["bash", str(folder / "results.sh")], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert recorded(record / "python") == [
        str(REPO / "code" / "processResults.py"), "--exp_id", "s", "--acc_evol", "lr", "batch_size"]


def test_a_tasks_file_gives_one_task_per_option_line(fake, output_root, tmp_path):
    env, record, _ = fake
    tasks = tmp_path / "tasks.txt"
    tasks.write_text("# seeds in two groups\n--seeds 1 2 3 4\n\n  --seeds 5 6 7 8 --lr 0.001\n")
    result = submit(env, "--exp_id", "g", "--tasks", str(tasks), "--acc_evol", "seed")
    assert result.returncode == 0, result.stderr
    assert "--array=0-1" in recorded(record / "sbatch1")
    task_env = dict(env, SLURM_ARRAY_TASK_ID="1")
    run = subprocess.run(["bash", str(output_root / "slurm" / "g" / "array_task.sh")], env=task_env,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert recorded(record / "python")[-9:] == ["--exp_id", "g", "--seeds", "5", "6", "7", "8", "--lr", "0.001"]
    assert "--num_threads" not in recorded(record / "python")


def test_a_refused_array_job_is_reported(fake):
    env, record, bin_dir = fake
    (bin_dir / "sbatch").write_text("#!/usr/bin/env bash\necho 'sbatch: error: invalid partition' >&2\nexit 1\n")
    result = submit(env, "--exp_id", "r", "--sweep", "seed", "1", "2", "--acc_evol", "seed")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith("error: sbatch refused the array job")

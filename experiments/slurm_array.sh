#!/usr/bin/env bash
# A study as a SLURM job array: one array task per trainVal.py run, then processResults.py
# once every task has ended (a job submitted with --dependency=afterany:<array job>), which
# first writes into results.log the tasks that failed, why, and where their logs are.
#
# Usage (on a SLURM login node, from the folder the runs should start in):
#   experiments/slurm_array.sh --exp_id X (--tasks FILE | --sweep OPTION V1 V2 ...)
#                              --acc_evol OPTION [OPTION ...] [-- SHARED_OPTIONS ...]
#   --tasks FILE     one line of trainVal.py options per array task (blank lines and lines
#                    starting with # are skipped); a line may be a --seeds group.
#   --sweep OPTION   one task per value: --sweep lr 0.01 0.001 runs `--lr 0.01`, `--lr 0.001`.
#   --acc_evol       the options named in processResults.py's --acc_evol (figure legend).
#   after --          options shared by every net (--dataset, --data_dir, --epochs, ...);
#                    a task's own options come after them, so they win.
# Environment: PYTHON (default python3), CONFIG (default clust.config), SBATCH_OPTS (more
# sbatch options for both jobs, e.g. "--partition=cpu --time=2:00:00"), ARRAY_OPTS (for the
# array only, e.g. "--cpus-per-task=4 --gres=gpu:1"), MAX_RUNNING (at most this many tasks
# at once: --array=0-(N-1)%MAX_RUNNING), CLUSTNET_ROOT (where nets/ results/ vis/ go).
# Before submitting anything it runs PYTHON, which must import ClustNet's code (PyTorch
# included), and parses every task's options as trainVal.py would: one error line naming the
# task and exit status 2 otherwise.
# Writes slurm/X/ (under CLUSTNET_ROOT or the project root): tasks.txt, the two job scripts,
# task_<i>.log and task_<i>.status (its exit status) per array task, and results.log.
# Prints the two job ids and how to follow them.
source "$(dirname "$0")/help.sh"
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
CONFIG="${CONFIG:-clust.config}"
SBATCH_OPTS="${SBATCH_OPTS:-}"
ARRAY_OPTS="${ARRAY_OPTS:-}"
MAX_RUNNING="${MAX_RUNNING:-}"
OUT_ROOT="${CLUSTNET_ROOT:-$ROOT}"
USAGE="usage: $0 --exp_id X (--tasks FILE | --sweep OPTION V1 V2 ...) --acc_evol OPTION [OPTION ...] [-- SHARED_OPTIONS ...]"

fail() { echo "error: $1 ($USAGE)" >&2; exit 2; }  # bad usage: one line, exit status 2

exp_id="" tasks_file="" sweep_option="" sweep_values=() acc_evol=() shared=()
while [ $# -gt 0 ]; do
    case "$1" in
        --exp_id)
            [ $# -ge 2 ] && [ -n "$2" ] || fail "--exp_id needs a name"
            exp_id="$2"; shift 2 ;;
        --tasks)
            [ $# -ge 2 ] || fail "--tasks needs a file"
            tasks_file="$2"; shift 2 ;;
        --sweep)
            [ $# -ge 2 ] || fail "--sweep needs an option name and values"
            sweep_option="${2#--}"; shift 2
            while [ $# -gt 0 ] && [[ "$1" != --* ]]; do sweep_values+=("$1"); shift; done
            [ ${#sweep_values[@]} -gt 0 ] || fail "--sweep $sweep_option needs at least one value" ;;
        --acc_evol)
            shift
            while [ $# -gt 0 ] && [[ "$1" != --* ]]; do acc_evol+=("$1"); shift; done
            [ ${#acc_evol[@]} -gt 0 ] || fail "--acc_evol needs at least one option name" ;;
        --)
            shift; shared=("$@"); break ;;
        *)
            fail "unknown argument '$1' (trainVal.py options shared by all nets go after --)" ;;
    esac
done

[ -n "$exp_id" ] || fail "--exp_id is required"
[[ "$exp_id" != */* ]] || fail "--exp_id must not contain /"
[ ${#acc_evol[@]} -gt 0 ] || fail "--acc_evol is required"
if [ -n "$tasks_file" ] && [ -n "$sweep_option" ]; then fail "give --tasks or --sweep, not both"; fi
[ -n "$tasks_file" ] || [ -n "$sweep_option" ] || fail "give the per-task options: --tasks FILE or --sweep OPTION V1 V2 ..."
[ -z "$MAX_RUNNING" ] || [[ "$MAX_RUNNING" =~ ^[1-9][0-9]*$ ]] || fail "MAX_RUNNING must be a positive integer, not '$MAX_RUNNING'"
for arg in "${shared[@]+"${shared[@]}"}"; do
    [ "$arg" != "--exp_id" ] || fail "--exp_id goes before --, not among the shared options"
done

# The per-task option lines.
task_lines=()
if [ -n "$tasks_file" ]; then
    [ -f "$tasks_file" ] || fail "tasks file '$tasks_file' not found"
    while IFS= read -r line || [ -n "$line" ]; do
        trimmed="${line#"${line%%[![:space:]]*}"}"
        [ -z "$trimmed" ] || [[ "$trimmed" == \#* ]] || task_lines+=("$trimmed")
    done < "$tasks_file"
    [ ${#task_lines[@]} -gt 0 ] || fail "tasks file '$tasks_file' has no task line"
else
    for value in "${sweep_values[@]}"; do task_lines+=("--$sweep_option $value"); done
fi
n=${#task_lines[@]}

command -v sbatch > /dev/null || { echo "error: sbatch not found on PATH: run this on a SLURM login node" >&2; exit 2; }

# A study writes a new experiment, as the other study scripts do.
for folder in nets results vis slurm; do
    if [ -e "$OUT_ROOT/$folder/$exp_id" ]; then
        echo "error: experiment $exp_id exists; remove nets/$exp_id results/$exp_id vis/$exp_id slurm/$exp_id to run this study again" >&2
        exit 2
    fi
done

# PYTHON runs ClustNet's code, and every task's options parse (trainVal.py's own parser), before
# anything is written or submitted. A task line is split into words as the array task splits it.
command -v "$PYTHON" > /dev/null || { echo "error: PYTHON=$PYTHON: no such command" >&2; exit 2; }
status=0
checked=$("$PYTHON" - "$PYTHON" "$ROOT/code" "$CONFIG" "$exp_id" "${#shared[@]}" \
    "${shared[@]+"${shared[@]}"}" "${task_lines[@]}" 2>&1 <<'CHECK'
import sys
python, code, config, exp_id, n_shared, *words = sys.argv[1:]
sys.path.insert(0, code)
try:
    import clustnet.modes  # noqa: F401  (what a task imports: PyTorch and the rest)
    from clustnet.errors import ClustNetError
    from clustnet.options import read_command_line
except Exception as error:
    print(f"error: PYTHON={python} cannot import ClustNet's code: {type(error).__name__}: {error}")
    sys.exit(2)
shared, lines = words[:int(n_shared)], words[int(n_shared):]
for task, line in enumerate(lines):
    try:
        read_command_line(["-c", config, "--progress", "False", "--exp_id", exp_id, *shared, *line.split()])
    except ClustNetError as error:
        print(f"error: task {task} ({line}): {error}; nothing was submitted")
        sys.exit(2)
CHECK
) || status=$?
if [ "$status" -ne 0 ]; then
    last="$(printf '%s\n' "$checked" | grep -v '^[[:space:]]*$' | tail -n 1)" || last=""
    if [[ "$last" == error:* ]]; then
        echo "$last" >&2
    else
        echo "error: PYTHON=$PYTHON failed (exit status $status)${last:+: $last}" >&2
    fi
    exit 2
fi

dir="$OUT_ROOT/slurm/$exp_id"
mkdir -p "$dir"
printf '%s\n' "${task_lines[@]}" > "$dir/tasks.txt"

# The job scripts, with every path and option written out, so a job does not depend on
# this shell's state; the jobs start in the folder this script was run from (sbatch's
# default), so relative paths in the options mean the same as here.
q() { [ $# -eq 0 ] || printf '%q ' "$@"; }  # shell-quoted words, each followed by a space
{
    echo '#!/usr/bin/env bash'
    echo "# Array task of study $exp_id: runs line SLURM_ARRAY_TASK_ID+1 of tasks.txt, then writes"
    echo "# its exit status into task_<SLURM_ARRAY_TASK_ID>.status (for results.sh)."
    echo 'set -euo pipefail'
    [ -z "${CLUSTNET_ROOT:-}" ] || echo "export CLUSTNET_ROOT=$(q "$CLUSTNET_ROOT")"
    echo ": \"\${SLURM_ARRAY_TASK_ID:?not an array task}\""
    echo "line=\$(sed -n \"\$((SLURM_ARRAY_TASK_ID + 1))p\" $(q "$dir/tasks.txt"))"
    echo 'threads=(); [ -z "${SLURM_CPUS_PER_TASK:-}" ] || threads=(--num_threads "$SLURM_CPUS_PER_TASK")'
    echo 'set -f  # the task line is split into words, never globbed'
    echo "echo \"task \$SLURM_ARRAY_TASK_ID on \$(hostname): \$line\""
    echo "status=0"
    echo "$(q "$PYTHON" "$ROOT/code/trainVal.py" -c "$CONFIG" --progress False --exp_id "$exp_id")\"\${threads[@]+\"\${threads[@]}\"}\" $(q "${shared[@]+"${shared[@]}"}")\$line || status=\$?"
    echo "status_file=$(printf '%q' "$dir")/task_\$SLURM_ARRAY_TASK_ID.status"
    echo 'echo "$status" > "$status_file.tmp" && mv "$status_file.tmp" "$status_file"'
    echo 'exit "$status"'
} > "$dir/array_task.sh"
{
    echo '#!/usr/bin/env bash'
    echo "# After every array task of study $exp_id ended (argument: the array job's id): the tasks"
    echo "# that failed (no task_<i>.status, or not 0), why and where their logs are; then the"
    echo "# accuracy curves of the nets the other tasks trained. Exit status 1 if a task failed."
    echo 'set -uo pipefail'
    [ -z "${CLUSTNET_ROOT:-}" ] || echo "export CLUSTNET_ROOT=$(q "$CLUSTNET_ROOT")"
    echo "dir=$(printf '%q' "$dir")"
    echo "n=$n"
    cat <<'RESULTS'
array_job="${1:-<array job id>}"
failed=0
for ((task = 0; task < n; task++)); do
    status=$(cat "$dir/task_$task.status" 2>/dev/null) || status=""
    [ "$status" != 0 ] || continue
    failed=$((failed + 1))
    if [ -n "$status" ]; then
        why="exit status $status"
    else
        why="no exit status: killed or cancelled (time limit, memory, scancel, node failure; sacct -j ${array_job}_$task says which)"
    fi
    last=$(grep -v '^[[:space:]]*$' "$dir/task_$task.log" 2>/dev/null | tail -n 1) || last=""
    echo "task $task failed ($why): $(sed -n "$((task + 1))p" "$dir/tasks.txt"); log $dir/task_$task.log${last:+, its last line: $last}"
done
if [ "$failed" -eq "$n" ]; then
    echo "error: all $n tasks failed (above): no nets to plot"
    exit 1
elif [ "$failed" -gt 0 ]; then
    echo "error: $failed of $n tasks failed (above); the accuracy curves show the other tasks' nets"
fi
RESULTS
    echo "$(q "$PYTHON" "$ROOT/code/processResults.py" --exp_id "$exp_id" --acc_evol "${acc_evol[@]}")|| exit"
    echo '[ "$failed" -eq 0 ]'
} > "$dir/results.sh"
chmod +x "$dir/array_task.sh" "$dir/results.sh"

range="0-$((n - 1))${MAX_RUNNING:+%$MAX_RUNNING}"
# shellcheck disable=SC2086  # SBATCH_OPTS and ARRAY_OPTS are lists of options
array_id=$(sbatch --parsable $SBATCH_OPTS $ARRAY_OPTS --job-name="$exp_id" --array="$range" \
    --output="$dir/task_%a.log" "$dir/array_task.sh") \
    || { echo "error: sbatch refused the array job (its message is above); nothing was submitted" >&2; exit 1; }
array_id="${array_id%%;*}"  # --parsable prints "id" or "id;cluster"
# shellcheck disable=SC2086
results_id=$(sbatch --parsable $SBATCH_OPTS --job-name="${exp_id}_results" \
    --dependency="afterany:$array_id" \
    --output="$dir/results.log" "$dir/results.sh" "$array_id") \
    || { echo "error: sbatch refused the results job (its message is above); the array job $array_id runs: after it, run $dir/results.sh $array_id" >&2; exit 1; }
results_id="${results_id%%;*}"

echo "submitted array job $array_id: $n tasks of $exp_id (logs $dir/task_<i>.log)"
echo "submitted results job $results_id: it runs once every task has ended, also if some failed (log $dir/results.log)"
echo "follow them: squeue -u ${USER:-$(id -un)}; once they ended: sacct -j $array_id,$results_id (each task's state and exit code)"
echo "a failed task: its log $dir/task_<i>.log ends with the reason; $dir/results.log lists the failed tasks"

# Shared by the study scripts: argument handling and a sweep runner.
# Usage of a study: experiments/<study>.sh DATA [EPOCHS]
#   DATA: for MNIST, the folder holding MNIST/raw/ (e.g. ../shared/data);
#         for CIFAR-10, the image folder holding train/ and test/ (e.g. /tmp/cifar/CIFAR10-jpg).
# Every net of a study has a fixed number (--ind_id) and runs with --resume True: rerunning
# the same command continues each net from its last complete epoch (a net at EPOCHS is left
# as it is), so a study stopped part way is finished by running its command again.
#   JOBS=n runs up to n trainVal.py processes at once (default 1: one after another).
#   PYTHON picks the interpreter (default python3); EXTRA holds more trainVal.py options (the
#   same on every rerun: a net continues only with its own options); CONFIG the config file
#   (default clust.config, the published method); FIGURES the folder the figure and its
#   per-epoch accuracy table are copied to (default readmeFiles/).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
JOBS="${JOBS:-1}"
EXTRA="${EXTRA:-}"
CONFIG="${CONFIG:-clust.config}"
FIGURES="${FIGURES:-$ROOT/readmeFiles}"

if [ $# -lt 1 ]; then
    echo "usage: $0 DATA [EPOCHS]" >&2
    exit 2
fi
DATA="$(cd "$1" && pwd)"
EPOCHS="${2:-$DEFAULT_EPOCHS}"

BACKGROUND=()  # the runs started in the background and not yet waited for

train() {
    # One trainVal.py run (--exp_id, --ind_id and the net's options in "$@"), started or
    # continued; in the background when JOBS > 1 (a failed one is reported by `finish`).
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || true; done
    # shellcheck disable=SC2086
    if [ "$JOBS" -gt 1 ]; then
        "$PYTHON" "$ROOT/code/trainVal.py" -c "$CONFIG" --progress False $EXTRA "$@" --resume True &
        BACKGROUND+=("$!")
    else
        "$PYTHON" "$ROOT/code/trainVal.py" -c "$CONFIG" $EXTRA "$@" --resume True
    fi
}

finish() {
    # Wait for the runs, plot the three accuracies, copy the figure and its per-epoch table
    # (the README's numbers) into $FIGURES.
    local exp="$1" failed=0 pid; shift
    for pid in "${BACKGROUND[@]}"; do wait "$pid" || failed=1; done
    BACKGROUND=()
    if [ "$failed" -ne 0 ]; then
        echo "error: a trainVal.py run failed (its error is above); run this command again to continue" >&2
        exit 1
    fi
    "$PYTHON" "$ROOT/code/processResults.py" --exp_id "$exp" --acc_evol "$@"
    mkdir -p "$FIGURES"
    local file
    for file in "${exp}_testError.png" "${exp}_testError.csv"; do
        cp "${CLUSTNET_ROOT:-$ROOT}/vis/$exp/$file" "$FIGURES/$file"
    done
    echo "wrote $FIGURES/${exp}_testError.png and $FIGURES/${exp}_testError.csv"
}

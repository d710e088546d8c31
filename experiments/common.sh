# Shared by the study scripts: argument handling and a sweep runner.
# Usage of a study: experiments/<study>.sh DATA [EPOCHS]
#   DATA: for MNIST, the folder holding MNIST/raw/ (e.g. ../shared/data);
#         for CIFAR-10, the image folder holding train/ and test/ (e.g. /tmp/cifar/CIFAR10-jpg).
#   JOBS=n runs up to n trainVal.py processes at once (default 1: one after another).
#   PYTHON picks the interpreter (default python3); EXTRA holds more trainVal.py options;
#   CONFIG the config file (default clust.config, the published method).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
JOBS="${JOBS:-1}"
EXTRA="${EXTRA:-}"
CONFIG="${CONFIG:-clust.config}"

if [ $# -lt 1 ]; then
    echo "usage: $0 DATA [EPOCHS]" >&2
    exit 2
fi
DATA="$(cd "$1" && pwd)"
EPOCHS="${2:-$DEFAULT_EPOCHS}"

fresh_experiment() {
    # A study writes a new experiment: it refuses to mix its nets with an older run's.
    for folder in nets results vis; do
        if [ -e "${CLUSTNET_ROOT:-$ROOT}/$folder/$1" ]; then
            echo "error: experiment $1 exists; remove nets/$1 results/$1 vis/$1 to run this study again" >&2
            exit 2
        fi
    done
}

train() {
    # One trainVal.py run, in the background when JOBS > 1.
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
    if [ "$JOBS" -gt 1 ]; then
        "$PYTHON" "$ROOT/code/trainVal.py" -c "$CONFIG" --progress False $EXTRA "$@" &
    else
        "$PYTHON" "$ROOT/code/trainVal.py" -c "$CONFIG" $EXTRA "$@"
    fi
}

finish() {
    # Wait for the runs, plot the three accuracies, copy the figure into readmeFiles/.
    local exp="$1"; shift
    while [ "$(jobs -rp | wc -l)" -gt 0 ]; do wait -n; done
    "$PYTHON" "$ROOT/code/processResults.py" --exp_id "$exp" --acc_evol "$@"
    cp "${CLUSTNET_ROOT:-$ROOT}/vis/$exp/${exp}_testError.png" "$ROOT/readmeFiles/${exp}_testError.png"
    echo "wrote readmeFiles/${exp}_testError.png and vis/$exp/${exp}_testError.csv"
}

#!/usr/bin/env bash
# The gate study of README's Results "Making the gate find the classes": clust_best.config
# over 5 seeds, and the ablation (each ingredient removed in turn, 5 seeds each).
# Usage: experiments/gate_study.sh NAME DATA [EPOCHS]
#   NAME: mnist (DATA holds MNIST/raw/, e.g. ../shared/data) or cifar (DATA: the CIFAR-10
#   image folder, see cifar_bs_lr.sh). EPOCHS defaults to clust_best.config's.
#   ONLY="best" runs the best method alone; ONLY="best no_views" a chosen subset.
# Writes the experiments gate_<variant>_<NAME>, their readmeFiles/*_testError.png, and
# `python3 experiments/results_table.py` prints their table.
set -euo pipefail
NAME="$1"; shift
case "$NAME" in
    mnist) DATASET_OPTIONS=(--dataset MNIST --data_dir) ;;
    cifar) DATASET_OPTIONS=(--dataset) ;;
    *) echo "error: NAME must be mnist or cifar, not $NAME" >&2; exit 2 ;;
esac
CONFIG=clust_best.config
DEFAULT_EPOCHS="$(sed -n 's/^epochs *= *//p' "$(dirname "$0")/../$CONFIG")"
source "$(dirname "$0")/common.sh"

# variant name -> the options that remove one ingredient from clust_best.config
declare -A VARIANTS=(
    [best]=""
    [no_views]="--consistency 0"
    [no_augmentation]="--aug_rotation 0 --aug_shift 0 --aug_scale 0"
    [no_balance]="--group_divers 0"
    [cut_binary_grad]="--cn_binary_grad False"
)
ORDER=(best no_views no_augmentation no_balance cut_binary_grad)
for variant in ${ONLY:-${ORDER[@]}}; do
    [ -n "${VARIANTS[$variant]+set}" ] || { echo "error: unknown variant $variant (${ORDER[*]})" >&2; exit 2; }
    fresh_experiment "gate_${variant}_${NAME}"
done
for variant in ${ONLY:-${ORDER[@]}}; do
    exp="gate_${variant}_${NAME}"
    # shellcheck disable=SC2086
    train --exp_id "$exp" "${DATASET_OPTIONS[@]}" "$DATA" --epochs "$EPOCHS" --seeds 1 2 3 4 5 ${VARIANTS[$variant]}
done
for variant in ${ONLY:-${ORDER[@]}}; do
    finish "gate_${variant}_${NAME}" seed
done

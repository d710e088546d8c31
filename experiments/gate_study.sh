#!/usr/bin/env bash
# The gate study (docs/gate_study.md): clust_best.config over 5 seeds, the ablation (each
# ingredient removed in turn) and the representation ingredients (each added), 5 seeds each.
# clust_best.config holds out a validation split (val_size): choose on its accuracies.
# Usage: experiments/gate_study.sh NAME DATA [EPOCHS]
#   NAME: mnist (DATA holds MNIST/raw/, e.g. ../shared/data) or cifar (DATA: the CIFAR-10
#   image folder, see cifar_bs_lr.sh). EPOCHS defaults to clust_best.config's.
#   ONLY="best" runs the best method alone; ONLY="best no_views" a chosen subset.
# Each variant's 5 nets are nets 1-5 of its experiment, trained together (--seeds 1 2 3 4 5);
# running the command again continues them from the last epoch all of them finished (common.sh).
# Writes the experiments gate_<variant>_<NAME> (PREFIX=p: p_<variant>_<NAME>, to keep a study of
# an earlier config apart) and their readmeFiles/*_testError.png;
# `python3 code/processResults.py --summary gate_best_<NAME> gate_no_views_<NAME> ...` tabulates them.
source "$(dirname "$0")/help.sh"
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
    [one_head]="--cn_heads 1 --heads_own_z False"
    [shared_z]="--heads_own_z False"
    [augmented_view_1]="--clean_view False"
    [no_weight_ema]="--weight_ema 0"
    # the representation ingredients (docs/gate_study.md), none in clust_best.config: each added
    # (the projection head and the over-clustering head read one z per net: the heads share one)
    [add_contrastive]="--contrastive 1 --proj_size 64 --heads_own_z False"
    [add_crop]="--contrastive 1 --proj_size 64 --aug_crop 0.5 --heads_own_z False"
    [add_warmup]="--contrastive 1 --proj_size 64 --warmup_epochs 3 --heads_own_z False"
    [add_overclust]="--overclust 25 --overclust_iic 1 --heads_own_z False"
    [add_self_label]="--self_label 1 --self_label_from 6"
    [add_enc3bn]="--enc_block conv3bn --encnblayers 3"
    [add_colour]="--aug_colour 0.4"
    [add_rotation]="--rotation_pred 1"
    # the consistency's teacher and its gradient through the clean view (screened as scr_*)
    [add_mean_teacher]="--consistency 0 --teacher_consistency 1"
    [add_encoder_cut]="--consistency_grad cn"
    [add_encoder_cut_half]="--consistency_grad cn --consistency_encoder_share 0.5"
    [add_confident_cut]="--consistency_grad confident"
)
ORDER=(best no_views no_augmentation no_balance cut_binary_grad one_head shared_z augmented_view_1 no_weight_ema add_contrastive add_crop add_warmup
       add_overclust add_self_label add_enc3bn add_colour add_rotation add_mean_teacher add_encoder_cut
       add_encoder_cut_half add_confident_cut)
for variant in ${ONLY:-${ORDER[@]}}; do
    [ -n "${VARIANTS[$variant]+set}" ] || { echo "error: unknown variant $variant (${ORDER[*]})" >&2; exit 2; }
done
PREFIX="${PREFIX:-gate}"
for variant in ${ONLY:-${ORDER[@]}}; do
    exp="${PREFIX}_${variant}_${NAME}"
    # shellcheck disable=SC2086
    train --exp_id "$exp" --ind_id 1 "${DATASET_OPTIONS[@]}" "$DATA" --epochs "$EPOCHS" --seeds 1 2 3 4 5 \
        ${VARIANTS[$variant]}
done
for variant in ${ONLY:-${ORDER[@]}}; do
    finish "${PREFIX}_${variant}_${NAME}" seed
done

#!/usr/bin/env bash
# CIFAR-10, batch size 4 and learning rate 0.01, one net per seed: readmeFiles/linDet2_cifar_testError.png.
# Usage: [SEEDS="1 2 3 4 5 6 7 8"] experiments/cifar_seeds.sh DATA [EPOCHS]
#   (DATA: the CIFAR-10 image folder, see cifar_bs_lr.sh)
# The nets train together in one process (--seeds), saved as nets 1, 2, ... of experiment
# linDet2_cifar (one per seed of SEEDS, in order). Running the command again (with the same
# SEEDS) continues them together from the last epoch all of them finished (common.sh).
source "$(dirname "$0")/help.sh"
DEFAULT_EPOCHS=100
source "$(dirname "$0")/common.sh"
SEEDS="${SEEDS:-1 2 3 4 5 6 7 8}"
# shellcheck disable=SC2086
train --exp_id linDet2_cifar --ind_id 1 --dataset "$DATA" --epochs "$EPOCHS" --batch_size 4 --lr 0.01 --seeds $SEEDS
finish linDet2_cifar seed

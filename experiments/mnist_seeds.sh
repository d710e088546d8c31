#!/usr/bin/env bash
# MNIST, batch size 4 and learning rate 0.01, one net per seed: readmeFiles/linDet2_testError.png.
# Usage: [SEEDS="1 2 3 4 5 6 7 8"] experiments/mnist_seeds.sh DATA [EPOCHS]
#   (DATA holds MNIST/raw/, e.g. ../shared/data)
# The nets train together in one process (--seeds), saved as nets 1, 2, ... of experiment
# linDet2 (one per seed of SEEDS, in order). Running the command again (with the same SEEDS)
# continues them together from the last epoch all of them finished (common.sh).
source "$(dirname "$0")/help.sh"
DEFAULT_EPOCHS=100
source "$(dirname "$0")/common.sh"
SEEDS="${SEEDS:-1 2 3 4 5 6 7 8}"
# shellcheck disable=SC2086
train --exp_id linDet2 --ind_id 1 --dataset MNIST --data_dir "$DATA" --epochs "$EPOCHS" --batch_size 4 --lr 0.01 \
    --seeds $SEEDS
finish linDet2 seed

#!/usr/bin/env bash
# MNIST, batch size 4 and learning rate 0.01, 8 seeds: readmeFiles/linDet2_testError.png.
# Usage: experiments/mnist_seeds.sh DATA [EPOCHS]   (DATA holds MNIST/raw/, e.g. ../shared/data)
# The 8 nets train together in one process (--seeds), each saved as its own net.
DEFAULT_EPOCHS=10
source "$(dirname "$0")/common.sh"
fresh_experiment linDet2
train --exp_id linDet2 --dataset MNIST --data_dir "$DATA" --epochs "$EPOCHS" --batch_size 4 --lr 0.01 --seeds 1 2 3 4 5 6 7 8
finish linDet2 seed

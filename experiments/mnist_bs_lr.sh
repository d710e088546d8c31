#!/usr/bin/env bash
# MNIST, batch size x learning rate: readmeFiles/linDet_testError.png.
# Usage: experiments/mnist_bs_lr.sh DATA [EPOCHS]   (DATA holds MNIST/raw/, e.g. ../shared/data)
DEFAULT_EPOCHS=10
source "$(dirname "$0")/common.sh"
fresh_experiment linDet
for batch_size in 4 64 256; do
    for lr in 0.01 0.001; do
        train --exp_id linDet --dataset MNIST --data_dir "$DATA" --epochs "$EPOCHS" --batch_size $batch_size --lr $lr
    done
done
finish linDet batch_size lr

#!/usr/bin/env bash
# MNIST, batch size x learning rate: readmeFiles/linDet_testError.png.
# Usage: experiments/mnist_bs_lr.sh DATA [EPOCHS]   (DATA holds MNIST/raw/, e.g. ../shared/data)
# Nets 1-6 of experiment linDet: batch size 4, 64, 256 (outer) x lr 0.01, 0.001 (inner).
# Running the command again continues each net from its last complete epoch (common.sh).
source "$(dirname "$0")/help.sh"
DEFAULT_EPOCHS=100
source "$(dirname "$0")/common.sh"
ind_id=0
for batch_size in 4 64 256; do
    for lr in 0.01 0.001; do
        ind_id=$((ind_id + 1))
        train --exp_id linDet --ind_id $ind_id --dataset MNIST --data_dir "$DATA" --epochs "$EPOCHS" \
            --batch_size $batch_size --lr $lr
    done
done
finish linDet batch_size lr

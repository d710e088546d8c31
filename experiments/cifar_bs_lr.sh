#!/usr/bin/env bash
# CIFAR-10, batch size x learning rate: readmeFiles/linDet_cifar_testError.png.
# Usage: experiments/cifar_bs_lr.sh DATA [EPOCHS]   (DATA: the CIFAR-10 image folder, e.g.
#   mkdir -p /tmp/cifar && tar xzf ../shared/data/CIFAR10-jpg.tar.gz -C /tmp/cifar; DATA=/tmp/cifar/CIFAR10-jpg)
# Nets 1-6 of experiment linDet_cifar: batch size 4, 64, 256 (outer) x lr 0.01, 0.001 (inner).
# Running the command again continues each net from its last complete epoch (common.sh).
source "$(dirname "$0")/help.sh"
DEFAULT_EPOCHS=100
source "$(dirname "$0")/common.sh"
ind_id=0
for batch_size in 4 64 256; do
    for lr in 0.01 0.001; do
        ind_id=$((ind_id + 1))
        train --exp_id linDet_cifar --ind_id $ind_id --dataset "$DATA" --epochs "$EPOCHS" \
            --batch_size $batch_size --lr $lr
    done
done
finish linDet_cifar batch_size lr

#!/usr/bin/env bash
# CIFAR-10, batch size x learning rate: readmeFiles/linDet_cifar_testError.png.
# Usage: experiments/cifar_bs_lr.sh DATA [EPOCHS]   (DATA: the CIFAR-10 image folder, e.g.
#   mkdir -p /tmp/cifar && tar xzf ../shared/data/CIFAR10-jpg.tar.gz -C /tmp/cifar; DATA=/tmp/cifar/CIFAR10-jpg)
DEFAULT_EPOCHS=5
source "$(dirname "$0")/common.sh"
fresh_experiment linDet_cifar
for batch_size in 4 64 256; do
    for lr in 0.01 0.001; do
        train --exp_id linDet_cifar --dataset "$DATA" --epochs "$EPOCHS" --batch_size $batch_size --lr $lr
    done
done
finish linDet_cifar batch_size lr

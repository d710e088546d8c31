#!/usr/bin/env bash
# CIFAR-10, batch size 4 and learning rate 0.01, 8 seeds: readmeFiles/linDet2_cifar_testError.png.
# Usage: experiments/cifar_seeds.sh DATA [EPOCHS]   (DATA: the CIFAR-10 image folder, see cifar_bs_lr.sh)
DEFAULT_EPOCHS=5
source "$(dirname "$0")/common.sh"
fresh_experiment linDet2_cifar
train --exp_id linDet2_cifar --dataset "$DATA" --epochs "$EPOCHS" --batch_size 4 --lr 0.01 --seeds 1 2 3 4 5 6 7 8
finish linDet2_cifar seed

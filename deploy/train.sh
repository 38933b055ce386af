#!/usr/bin/env bash
# The main job: trains the default model (DCGAN-32) on Fashion-MNIST and writes
# samples, checkpoints and a summary to runs/dcgan32 (rerun to resume).
# Extra flags go to paragan_train, e.g. --steps=10000 --model=biggan32.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/setup.sh
bazel build //worker/train:paragan_train //worker/train:paragan_sample
exec bazel-bin/worker/train/paragan_train --model=dcgan32 --dataset=fashion_mnist \
  --data_dir=/usr/share/datasets/fashion-mnist --steps=3000 --out_dir=runs/dcgan32 "$@"

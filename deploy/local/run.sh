#!/usr/bin/env bash
# ParaGAN's services on this machine: 2 parameter-server shards, the data
# service and 2 workers train DCGAN-32 on Fashion-MNIST; progress every few
# seconds; samples, checkpoints and a summary land in runs/local/ (rerun to
# resume). Ctrl-C stops every process cleanly and still writes the outputs.
# Extra flags go to paragan_local, e.g. --minutes=10 --num_workers=1
# --mode=sync --model=biggan32 --out_dir=runs/biggan32-local.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash deploy/setup.sh
bazel build //deploy/local:paragan_local //server:paragan_server \
  //dataloader:paragan_data //worker/distributed:paragan_worker \
  //worker/train:paragan_init //worker/train:paragan_sample //worker/eval:paragan_eval
exec bazel-bin/deploy/local/paragan_local --model=dcgan32 --dataset=fashion_mnist \
  --data_dir=/usr/share/datasets/fashion-mnist --out_dir=runs/local "$@"

#!/usr/bin/env bash
# Quality per wall-clock second: DCGAN-32 on Fashion-MNIST for the same
# number of seconds with paragan_train and with the PyTorch reference, on the
# same threads; writes both sample grids (and samples.npy) under OUT.
#   bash tests/bench/quality_dcgan32.sh [seconds] [threads] [out]
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-1800}
threads=${2:-2}
out=${3:-runs/quality}
data=/usr/share/datasets/fashion-mnist
bash deploy/setup.sh
bazel build //worker/train:paragan_train >/dev/null 2>&1
rm -rf "$out/paragan" "$out/pytorch"
mkdir -p "$out"
bazel-bin/worker/train/paragan_train --model=dcgan32 --data_dir=$data --threads="$threads" \
  --steps=100000000 --max_seconds="$seconds" --log_every=500 --sample_every=0 \
  --checkpoint_every=0 --resume=false --eval_every_s=0 --out_dir="$out/paragan" | tee "$out/paragan.log"
/usr/bin/python3 tests/pytorch/train_reference.py --data $data --seconds "$seconds" \
  --threads "$threads" --log-every 60 --out "$out/pytorch" | tee "$out/pytorch.log"
echo "grids: $out/paragan/samples.png $out/pytorch/samples_grid.png"
grep -H -E 'steps|images_per_second|imgs_per_s' "$out/paragan/summary.txt" "$out/pytorch/summary.txt"

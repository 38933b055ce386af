#!/usr/bin/env bash
# Times one training step (D step + G step, batch 64) of DCGAN-32 and
# BigGAN-32 in ParaGAN (autotuned, blocked and canonical CPU layouts) and in PyTorch on
# the same threads, and prints the ratios. Run on an otherwise idle machine.
#   bash tests/bench/step_time.sh [threads] [dcgan_iters] [biggan_iters]
set -euo pipefail
cd "$(dirname "$0")/../.."
threads=${1:-2}
dcgan_iters=${2:-30}
biggan_iters=${3:-4}
bash deploy/setup.sh
bazel build //worker/train:paragan_bench >/dev/null 2>&1
bench=bazel-bin/worker/train/paragan_bench
ms() { grep '^RESULT' | sed 's/.*ms_per_step=\([0-9.]*\).*/\1/'; }
printf '%-10s %-22s %12s\n' model engine ms/step
declare -A t
for model in dcgan32 biggan32; do
  iters=$dcgan_iters; warm=3
  if [ "$model" = biggan32 ]; then iters=$biggan_iters; warm=1; fi
  for layout in auto blocked canonical; do
    t[$model,$layout]=$($bench --model=$model --threads="$threads" --layout=$layout --warmup=$warm --iters="$iters" | ms)
    printf '%-10s %-22s %12s\n' $model "paragan ($layout)" "${t[$model,$layout]}"
  done
  t[$model,torch]=$(/usr/bin/python3 tests/pytorch/bench_reference.py --model $model --threads "$threads" \
      --batch 64 --warmup $warm --iters "$iters" | ms)
  printf '%-10s %-22s %12s\n' $model "pytorch" "${t[$model,torch]}"
  awk -v a="${t[$model,auto]}" -v bl="${t[$model,blocked]}" -v b="${t[$model,torch]}" -v c="${t[$model,canonical]}" -v m=$model \
    'BEGIN { printf "%-10s ratio paragan(auto)/pytorch = %.3f; speed-up over canonical NCHW: auto %.2fx, blocked %.2fx\n", m, a/b, c/a, c/bl }'
done

#!/usr/bin/env bash
# Time to FID: trains DCGAN-32 on Fashion-MNIST for the same wall time in
# each configuration, one after the other on this machine, and plots their
# FID(fmnist-cnn) curves on one PNG with a table of the FID reached by 5, 10,
# 20 and 30 minutes:
#   single   paragan_train (its in-process evaluator)
#   sync     paragan_local --mode=sync (2 shards, 2 workers, live evaluator)
#   async    paragan_local (the default: async, coupled schedule)
#   decoupled  paragan_local --schedule=decoupled (1 G + 1 D worker)
#   pytorch  tests/pytorch/train_reference.py, EMA samples saved every
#            EVAL_S of training and scored afterwards by the same paragan_eval
# Every curve: EVAL_S between evaluations, 2000 samples per evaluation (the
# final one too), the same reference statistics.
#   bash tests/bench/time_to_fid.sh [minutes] [out] [configs...]
set -euo pipefail
cd "$(dirname "$0")/../.."
minutes=${1:-30}
out=${2:-runs/time_to_fid}
shift $(( $# < 2 ? $# : 2 ))
configs=("$@")
[ ${#configs[@]} -gt 0 ] || configs=(single sync async pytorch)
EVAL_S=${EVAL_S:-60}
SAMPLES=${SAMPLES:-2000}
data=/usr/share/datasets/fashion-mnist
seconds=$(awk "BEGIN{print $minutes*60}")
# NO_BUILD=1: use the binaries already in bazel-bin (e.g. while holding
# Bazel's lock so that no build shares the CPU with the runs).
if [ "${NO_BUILD:-0}" != 1 ]; then
bash deploy/setup.sh
bazel build //deploy/local:paragan_local //server:paragan_server \
  //dataloader:paragan_data //worker/distributed:paragan_worker \
  //worker/train:paragan_init //worker/train:paragan_sample \
  //worker/train:paragan_train //worker/eval:paragan_eval \
  //worker/eval:paragan_fid_plot >/dev/null 2>&1
fi
mkdir -p "$out"
eval_flags=(--eval_every_s="$EVAL_S" --eval_samples="$SAMPLES" --eval_final_samples="$SAMPLES")
local_run() {  # name, extra flags
  local name=$1; shift
  rm -rf "${out:?}/$name"
  bazel-bin/deploy/local/paragan_local --model=dcgan32 --dataset=fashion_mnist \
    --data_dir=$data --minutes="$minutes" --steps=100000000 --out_dir="$out/$name" \
    "${eval_flags[@]}" "$@" >"$out/$name.log" 2>&1
}
for c in "${configs[@]}"; do
  echo "== $c ($minutes min) $(date -u +%H:%M:%S)"
  case $c in
    single)
      rm -rf "${out:?}/single"
      bazel-bin/worker/train/paragan_train --model=dcgan32 --data_dir=$data --threads=2 \
        --steps=100000000 --max_seconds="$seconds" --log_every=500 --sample_every=0 \
        --checkpoint_every=0 --resume=false --out_dir="$out/single" "${eval_flags[@]}" \
        >"$out/single.log" 2>&1 ;;
    sync) local_run sync --mode=sync ;;
    async) local_run async ;;
    decoupled) local_run decoupled --schedule=decoupled ;;
    pytorch)
      rm -rf "${out:?}/pytorch"
      /usr/bin/python3 tests/pytorch/train_reference.py --data $data --seconds "$seconds" \
        --threads 2 --log-every 60 --snapshot-every "$EVAL_S" --snapshot-samples "$SAMPLES" \
        --out "$out/pytorch" >"$out/pytorch.log" 2>&1
      for f in "$out"/pytorch/snapshots/t*_step*.npy; do
        b=$(basename "$f" .npy); t=${b#t}; t=${t%%_*}; s=${b##*_step}
        bazel-bin/worker/eval/paragan_eval --samples="$f" --csv="$out/pytorch/fid.csv" \
          --row_wall_s="$t" --row_g_step="$((10#$s))" >>"$out/pytorch_eval.log" 2>&1
      done ;;
    *) echo "unknown configuration '$c' (single | sync | async | decoupled | pytorch)" >&2; exit 2 ;;
  esac
  tail -1 "$out/$c/fid.csv" || echo "$c: no fid.csv (see $out/$c.log)"
done
plot_args=()
for c in single sync async decoupled pytorch; do
  [ -f "$out/$c/fid.csv" ] && plot_args+=("$c=$out/$c/fid.csv")
done
bazel-bin/worker/eval/paragan_fid_plot --out="$out/time_to_fid.png" \
  --title="DCGAN-32 Fashion-MNIST: FID(fmnist-cnn, ${SAMPLES} samples) against wall time" \
  "${plot_args[@]}" | tee "$out/table.md"

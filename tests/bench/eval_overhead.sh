#!/usr/bin/env bash
# Does the live evaluator slow training? Runs the README's main command
# (paragan_local, DCGAN-32, 2 shards, 2 workers) for MINUTES with the
# evaluator off and on, alternately, PAIRS times, and prints each run's G
# steps and images/s (from summary.json) and the mean difference.
#   bash tests/bench/eval_overhead.sh [minutes] [pairs] [out] [eval flags...]
set -euo pipefail
cd "$(dirname "$0")/../.."
minutes=${1:-3}
pairs=${2:-2}
out=${3:-runs/eval_overhead}
shift $(( $# < 3 ? $# : 3 ))
# NO_BUILD=1: use bazel-bin as it is (see time_to_fid.sh).
if [ "${NO_BUILD:-0}" != 1 ]; then
bash deploy/setup.sh
bazel build //deploy/local:paragan_local //server:paragan_server \
  //dataloader:paragan_data //worker/distributed:paragan_worker \
  //worker/train:paragan_init //worker/train:paragan_sample \
  //worker/eval:paragan_eval >/dev/null 2>&1
fi
rm -rf "$out"
mkdir -p "$out"
field() { sed -n "s/.*\"$2\": \([0-9.]*\).*/\1/p" "$1/summary.json" | head -1; }
for i in $(seq 1 "$pairs"); do
  for ev in off on; do
    flags=(--eval_every_s=0)
    [ "$ev" = on ] && flags=(--eval_every_s=30 --eval_final_samples=0 "$@")
    bazel-bin/deploy/local/paragan_local --model=dcgan32 --dataset=fashion_mnist \
      --data_dir=/usr/share/datasets/fashion-mnist --minutes="$minutes" \
      --steps=100000000 --out_dir="$out/$ev$i" "${flags[@]}" >"$out/$ev$i.log" 2>&1
    rounds=$( [ -f "$out/$ev$i/fid.csv" ] && echo $(( $(wc -l <"$out/$ev$i/fid.csv") - 1 )) || echo 0)
    echo "$ev$i g_steps_this_run $(field "$out/$ev$i" g_steps_this_run) images_per_s $(field "$out/$ev$i" images_per_s) eval_rounds $rounds"
  done
done | tee "$out/results.txt"
awk '{s[substr($1,1,length($1)-1)]+=$3; n[substr($1,1,length($1)-1)]++}
     END {off=s["off"]/n["off"]; on=s["on"]/n["on"];
          printf "mean G steps: off %.0f, on %.0f (%+.1f%%)\n", off, on, 100*(on-off)/off}' \
  "$out/results.txt"

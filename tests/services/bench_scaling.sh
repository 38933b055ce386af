#!/usr/bin/env bash
# Issue 15's elastic target: a running job scaled 2 -> 4 -> 1 -> 3 workers
# (paragan_local --scale_workers) against fresh runs with 4, 1 and 3
# workers; images/s measured over MEASURE s starting SETTLE s after each
# change (for fresh runs: after "worker(s) started"), from shard 0's D
# version (asynchronous: one worker batch per D step) x batch / seconds.
# Target: each scaled phase within 15% of the fresh run of its size.
#   usage: [DATASET=synthetic] [BATCH=32] bash tests/services/bench_scaling.sh [SETTLE=30] [MEASURE=20]
set -euo pipefail
cd "$(dirname "$0")/../.."
SETTLE=${1:-30}; MEASURE=${2:-20}
B=${BIN_DIR:-bazel-out/k8-opt/bin}
DATASET=${DATASET:-synthetic}; BATCH=${BATCH:-32}
OUT=${OUT:-/tmp/paragan_bench_scaling}
rm -rf "$OUT"; mkdir -p "$OUT"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); dataset $DATASET, batch $BATCH, DCGAN-32, 2 shards, async"
DATA_DIR=""; [ "$DATASET" = fashion_mnist ] && DATA_DIR=/usr/share/datasets/fashion-mnist
start_run() {  # dir workers
  "$B/deploy/local/paragan_local" --bin_dir="$B" --dataset="$DATASET" --data_dir="$DATA_DIR" \
    --batch_size="$BATCH" --num_workers="$2" --num_shards=2 --minutes=30 --steps=0 \
    --progress_s=5 --threads_per_worker=1 --eval_every_s=0 --num_samples=16 \
    --out_dir="$1" > "$1.stdout" 2>&1 &
  PID=$!
}
d_version() {  # run dir
  local m
  m=$(sed -n 's/.*metrics on port \([0-9]*\).*/\1/p' "$1/logs/shard0.log" 2>/dev/null | head -1)
  curl -s --max-time 2 "http://127.0.0.1:$m/metrics" |
    awk '/^paragan_ps_table_version\{shard="0",table="D"\}/ {print $2}'
}
# img/s over MEASURE s, SETTLE s from now.
rate() {  # run dir
  sleep "$SETTLE"
  local v0 v1 t0 t1
  v0=$(d_version "$1"); t0=$(date +%s.%N)
  sleep "$MEASURE"
  v1=$(d_version "$1"); t1=$(date +%s.%N)
  awk "BEGIN{printf \"%.1f\", ($v1 - $v0) * $BATCH / ($t1 - $t0)}"
}
wait_started() {  # run dir
  until grep -q "worker(s) started" "$1.stdout" 2>/dev/null; do sleep 0.2; done
}
stop_run() { kill -INT "$PID"; wait "$PID" || true; }

declare -A SCALED FRESH
start_run "$OUT/scaled" 2; wait_started "$OUT/scaled"
SCALED[2]=$(rate "$OUT/scaled")
for n in 4 1 3; do
  "$B/deploy/local/paragan_local" --out_dir="$OUT/scaled" --scale_workers=$n
  SCALED[$n]=$(rate "$OUT/scaled")
  echo "scaled run, $n worker(s): ${SCALED[$n]} img/s"
done
stop_run
for n in 4 1 3; do
  start_run "$OUT/fresh$n" $n; wait_started "$OUT/fresh$n"
  FRESH[$n]=$(rate "$OUT/fresh$n")
  stop_run
  echo "fresh run, $n worker(s): ${FRESH[$n]} img/s"
done
echo
echo "| workers | scaled run img/s | fresh run img/s | scaled / fresh | within 15% |"
echo "|---|---|---|---|---|"
echo "| 2 (start) | ${SCALED[2]} | - | - | - |"
for n in 4 1 3; do
  awk -v n=$n -v s="${SCALED[$n]}" -v f="${FRESH[$n]}" 'BEGIN{r = s / f; printf "| %d | %s | %s | %.2f | %s |\n", n, s, f, r, (r >= 0.85 && r <= 1.15) ? "yes" : "NO"}'
done

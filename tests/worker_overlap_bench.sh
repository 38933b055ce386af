#!/bin/bash
# How much of the worker's communication is hidden behind its compute:
# one asynchronous worker against two local shards, --overlap=true and
# --overlap=false alternately (twice each), same steps and batch.
#   bash tests/worker_overlap_bench.sh [bazel-bin] [steps] [batch] [threads]
set -u
B="${1:-bazel-bin}"; STEPS="${2:-60}"; BATCH="${3:-32}"; THREADS="${4:-1}"
T=$(mktemp -d)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; rm -rf "$T"' EXIT
PS=""
"$B/worker/train/paragan_init" --model=dcgan32 --out="$T/init.pgt" >/dev/null || exit 1
for s in 0 1; do
  "$B/server/paragan_server" --port=0 --bind_address=127.0.0.1 --shard_id=$s \
    --num_shards=2 --init="$T/init.pgt" --port_file="$T/p$s" >"$T/s$s.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 100); do [ -s "$T/p$s" ] && break; sleep 0.1; done
  PS="$PS${PS:+,}127.0.0.1:$(cat "$T/p$s")"
done
printf "%-8s %8s %8s %8s %8s %8s %8s\n" overlap img/s wall_s compute_s comm_s exposed_s hidden
for run in 1 2; do
  for ov in true false; do
    "$B/worker/distributed/paragan_worker" --worker_id=bench-$ov-$run --ps="$PS" \
      --dataset=synthetic --synthetic_size=1024 --batch_size=$BATCH \
      --threads=$THREADS --cpu_layout=blocked --steps=$STEPS --log_every=0 \
      --seed=$run --overlap=$ov >"$T/w.log" 2>&1 || { cat "$T/w.log"; exit 1; }
    sed -n 's/.*time: wall \([0-9.]*\) s, compute \([0-9.]*\) s, .*communication \([0-9.]*\) s .*exposed \([0-9.]*\) s (\([0-9]*\)% hidden).*/\1 \2 \3 \4 \5/p' "$T/w.log" |
      awk -v ov=$ov -v n=$((STEPS * BATCH)) '{ printf "%-8s %8.1f %8.2f %8.2f %8.2f %8.2f %7s%%\n", ov, n / $1, $1, $2, $3, $4, $5 }'
  done
done

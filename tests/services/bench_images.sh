#!/usr/bin/env bash
# Images/s of the whole system (paragan_local: 2 shards + data service + N
# workers) against the single-process trainer, DCGAN-32 on Fashion-MNIST,
# batch 64, on this machine. Steady-state rates after a warm-up (the CPU
# layout autotune and process start-up are excluded):
#   single process: mean of paragan_train's window img/s after the first 2
#     log lines;
#   services: (G step at the end - G step after WARMUP s) x batch / seconds
#     between the two progress lines.
#   usage: [RUNS="single 1 2"] [LAUNCHER_FLAGS=...] bash tests/services/bench_images.sh [seconds per run] [threads]
#   (LAUNCHER_FLAGS: extra paragan_local flags, e.g. "--worker_flags=--data_plane=false")
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-150}; THREADS=${2:-2}; WARMUP=${WARMUP:-45}
B=${BIN_DIR:-bazel-out/k8-opt/bin}
OUT=${OUT:-/tmp/paragan_bench_images}
rm -rf "$OUT"; mkdir -p "$OUT"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load before: $(cut -d' ' -f1-3 /proc/loadavg)"

RUNS=${RUNS:-single 1 2}  # which of: single, 1, 2 (workers)
if [[ " $RUNS " == *" single "* ]]; then
"$B/worker/train/paragan_train" --model=dcgan32 --dataset=fashion_mnist \
  --steps=100000 --max_seconds="$SECS" --threads="$THREADS" --log_every=50 \
  --sample_every=100000 --checkpoint_every=100000 --num_samples=10 \
  --resume=false --eval_every_s=0 --out_dir="$OUT/single" > "$OUT/single.log" 2>&1 || true
SINGLE=$(python3 - "$OUT/single.log" <<'PY'
import re, sys
v = [float(m.group(1)) for m in re.finditer(r"\|\s+([0-9.]+) img/s", open(sys.argv[1]).read())]
v = v[2:] if len(v) > 3 else v
print("%.1f" % (sum(v) / len(v)) if v else "nan")
PY
)
echo "single process (paragan_train, $THREADS threads): $SINGLE img/s"
fi

rate() {  # launcher stdout -> steady img/s
  python3 - "$1" "$WARMUP" <<'PY'
import re, sys
pts = []
for line in open(sys.argv[1]):
    m = re.match(r"\[\s*(\d+)m(\d+)s\] G step (\d+)", line)
    if m: pts.append((int(m.group(1)) * 60 + int(m.group(2)), int(m.group(3))))
warm = float(sys.argv[2])
pts = [p for p in pts if p[0] >= warm]
if len(pts) < 2: print("nan"); sys.exit()
(t0, g0), (t1, g1) = pts[0], pts[-1]
print("%.1f" % ((g1 - g0) * 64 / max(t1 - t0, 1e-9)))
PY
}
for W in $RUNS; do
  [ "$W" = single ] && continue
  TPW=$(( THREADS / W )); [ "$TPW" -ge 1 ] || TPW=1
  "$B/deploy/local/paragan_local" --model=dcgan32 --num_workers=$W --num_shards=2 \
    --threads_per_worker=$TPW --batch_size=64 --steps=0 --minutes=$(awk "BEGIN{print $SECS/60}") \
    --progress_s=5 --log_every=20 --num_samples=10 --eval_every_s=0 --out_dir="$OUT/local$W" ${LAUNCHER_FLAGS:-} \
    > "$OUT/local$W.log" 2>&1 || true
  R=$(rate "$OUT/local$W.log")
  echo "services, $W worker(s) x $TPW thread(s) + 2 shards + data service: $R img/s (summary: $(grep -m1 '^images/s' "$OUT/local$W/summary.txt" | cut -d' ' -f2) incl. start-up)"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

#!/usr/bin/env bash
# Scaling with simulated compute: paragan_local runs N workers against S
# shards for SECONDS each, every worker's D and G step replaced by a wait
# (paragan_worker --simulate_d_step_ms/--simulate_g_step_ms; default: the
# H200's measured BigGAN-32 step, 28.50 ms, split evenly, since no split of
# it was measured), with real tables, pushes, pulls, data and samples. Per
# point: steady-state D images/s (D table versions x batch between the
# first progress line at or after a third of the run and the last one), the
# efficiency (throughput at N / (N x coupled throughput at 1 worker, same
# shards)) and the mean CPU of the shards, the workers and the data service
# (top every 5 s; 100% = one core) to name the bottleneck.
#   bash tests/bench/scaling.sh [out] [seconds]
# Environment: MODEL (biggan32), D_MS/G_MS (14.25), WORKERS ("1 2 4 8 16"),
# SHARDS ("1 2 4"), SCHEDULES ("coupled decoupled sync"), BATCH (64),
# NO_BUILD=1 (use bazel-bin as it is).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-runs/scaling}
seconds=${2:-45}
MODEL=${MODEL:-biggan32}
D_MS=${D_MS:-14.25}
G_MS=${G_MS:-14.25}
WORKERS=${WORKERS:-1 2 4 8 16}
SHARDS=${SHARDS:-1 2 4}
SCHEDULES=${SCHEDULES:-coupled decoupled sync}
BATCH=${BATCH:-64}
if [ "${NO_BUILD:-0}" != 1 ]; then
  bash deploy/setup.sh
  bazel build //deploy/local:paragan_local //server:paragan_server \
    //dataloader:paragan_data //worker/distributed:paragan_worker \
    //worker/train:paragan_init //worker/train:paragan_sample >/dev/null 2>&1
fi
mkdir -p "$out"
minutes=$(awk "BEGIN{print $seconds/60}")
table="$out/table.md"
echo "| schedule | shards | workers | D img/s | G steps/s | efficiency | CPU shards | CPU workers | CPU data | CPU total |" >"$table"
echo "|---|---|---|---|---|---|---|---|---|---|" >>"$table"
declare -A base
for sched in $SCHEDULES; do
  for s in $SHARDS; do
    for n in $WORKERS; do
      [ "$sched" = decoupled ] && [ "$n" -lt 2 ] && continue
      name="$sched-s$s-w$n"
      flags=(--num_shards="$s" --num_workers="$n")
      [ "$sched" = decoupled ] && flags+=(--schedule=decoupled)
      [ "$sched" = sync ] && flags+=(--mode=sync)
      rm -rf "${out:?}/$name"
      bazel-bin/deploy/local/paragan_local --model="$MODEL" --dataset=synthetic --data_dir= \
        --batch_size="$BATCH" --minutes="$minutes" --steps=0 --eval_every_s=0 --num_samples=16 \
        --threads_per_worker=1 --progress_s=5 --out_dir="$out/$name" "${flags[@]}" \
        --worker_flags="--simulate_d_step_ms=$D_MS --simulate_g_step_ms=$G_MS" \
        >"$out/$name.log" 2>&1 &
      pid=$!
      : >"$out/$name.cpu"
      while kill -0 "$pid" 2>/dev/null; do
        top -b -n 1 -w 200 | awk '$12 ~ /^paragan_/ {c[$12] += $9} END {for (k in c) printf "%s %s\n", k, c[k]}' \
          | tr '\n' ' ' >>"$out/$name.cpu"
        echo >>"$out/$name.cpu"
        sleep 5
      done
      wait "$pid" || echo "$name: paragan_local failed (see $out/$name.log)"
      /usr/bin/python3 - "$out/$name.log" "$out/$name.cpu" "$BATCH" "$seconds" \
        >"$out/$name.point" <<'PY'
import re, sys
log, cpu, batch, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
rows = []
for line in open(log):
    m = re.match(r"\[ *(\d+)m(\d+)s\] G step \d+ \| D/G versions (\d+)/(\d+)", line)
    if m:
        rows.append((60 * int(m.group(1)) + int(m.group(2)), int(m.group(3)), int(m.group(4))))
rows = [r for r in rows if r[1] > 0]
late = [r for r in rows if r[0] >= seconds / 3] or rows
if len(late) < 2:
    print("nan nan nan nan nan nan"); sys.exit()
a, b = late[0], late[-1]
dt = b[0] - a[0]
d_img = (b[1] - a[1]) * batch / dt
g_s = (b[2] - a[2]) / dt
# Mean CPU per kind over the samples taken while training ran.
kinds = {"paragan_server": 0.0, "paragan_worker": 0.0, "paragan_data": 0.0}
n = 0
for line in open(cpu):
    f = line.split()
    if not any(k.startswith("paragan_worker") for k in f[0::2]):
        continue
    n += 1
    for k, v in zip(f[0::2], f[1::2]):
        for kind in kinds:
            if k.startswith(kind[:14]):
                kinds[kind] += float(v)
n = max(n, 1)
c = [kinds[k] / n for k in ("paragan_server", "paragan_worker", "paragan_data")]
print("%.1f %.2f %.0f %.0f %.0f %.0f" % (d_img, g_s, c[0], c[1], c[2], sum(c)))
PY
      read -r d_img g_s c_ps c_w c_data c_all <"$out/$name.point"
      if [ "$sched" = coupled ] && [ "$n" = 1 ]; then base[$s]=$d_img; fi
      eff=$(awk -v t="$d_img" -v b="${base[$s]:-nan}" -v n="$n" 'BEGIN{ if (b+0 > 0) printf "%.0f%%", 100*t/(n*b); else print "-" }')
      echo "| $sched | $s | $n | $d_img | $g_s | $eff | $c_ps% | $c_w% | $c_data% | $c_all% |" | tee -a "$table"
    done
  done
done
echo "table: $table"

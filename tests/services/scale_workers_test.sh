#!/usr/bin/env bash
# A running local job scaled 2 -> 4 -> 1 -> 3 workers with the control
# command (paragan_local --out_dir=DIR --scale_workers=N), as `kubectl
# scale` changes the worker Deployment: the shards never restart; new
# workers register on both shards; workers scaled away deregister at once
# (the lease is 30 s, they must be gone within 5 s, and no lease expires);
# G versions only move forward and training continues after each change;
# and at the end the pushes every worker says each shard accepted add up to
# exactly the versions the shards reached (no update lost or applied twice).
#   args: paragan_local paragan_server paragan_data paragan_worker paragan_sample paragan_init
set -uo pipefail
LOCAL=$1
source "$(dirname "$0")/bin_dir.sh"
source "$(dirname "$0")/run_probes.sh"
BIN=$(make_bin_dir "${@:2:5}")
command -v curl >/dev/null || { echo "SKIP: curl is missing"; exit 0; }
T=${TEST_TMPDIR:-$(mktemp -d)}/scale
rm -rf "$T"; mkdir -p "$T"
OUT=$T/run
cleanup() { [ -n "${LOCAL_PID:-}" ] && kill -INT "$LOCAL_PID" 2>/dev/null; wait 2>/dev/null; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; for f in "$OUT.stdout" "$OUT"/logs/shard0.log; do [ -f "$f" ] && { echo "== $f"; tail -25 "$f"; }; done; exit 1; }
"$LOCAL" --out_dir="$OUT" --scale_workers=3 > "$T/none.out" 2>&1 && fail "scaling with no run succeeded"
grep -q "no paragan_local is training in" "$T/none.out" || fail "no clear error without a run: $(cat "$T/none.out")"
"$LOCAL" --bin_dir="$BIN" --dataset=synthetic --data_dir= --batch_size=8 --num_workers=2 \
  --num_shards=2 --minutes=6 --steps=0 --progress_s=3 --threads_per_worker=1 \
  --worker_lease_s=30 --num_samples=64 --out_dir="$OUT" > "$OUT.stdout" 2>&1 &
LOCAL_PID=$!
g_version() { shard_metric 0 'paragan_ps_table_version{shard="0",table="G"}'; }
g_moves() {  # from
  local now; now=$(g_version) || return 1
  awk "BEGIN{exit !($now > $1)}"
}

wait_for 120 "2 workers registered" registered_on_two_shards 2
wait_for 120 "training starts" g_moves 0
SHARDS=$(shard_pids)
[ -n "$SHARDS" ] || fail "no shard processes"
"$LOCAL" --out_dir="$OUT" --scale_workers=0 > "$T/zero.out" 2>&1 && fail "0 workers accepted"
grep -q "between 1 and" "$T/zero.out" || fail "no clear error for 0 workers: $(cat "$T/zero.out")"

for want in 4 1 3; do
  g_before=$(g_version)
  t0=$(date +%s.%N)
  scale_workers $want
  if [ $want = 1 ]; then
    wait_for 20 "only 1 worker registered" registered_on_two_shards 1
    took=$(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $t0}")
    echo "ok: 3 workers left the job ${took}s after the command (lease 30 s)"
    awk "BEGIN{exit !($took <= 5)}" || fail "workers took ${took}s to leave (target: 5 s)"
  else
    wait_for 90 "$want workers registered" registered_on_two_shards $want
  fi
  wait_for 60 "training goes on with $want worker(s)" g_moves "$g_before"
  sleep 6
  echo "ok: $want worker(s): G $g_before -> $(g_version)"
done
[ "$(shard_pids)" = "$SHARDS" ] || fail "the shards restarted: $SHARDS -> $(shard_pids)"
expired=$(shard_metric 0 'paragan_ps_expired_leases_total')
left=$(shard_metric 0 'paragan_ps_deregistered_workers_total{shard="0",table="D"}')
[ "$expired" = 0 ] || fail "$expired leases expired: workers did not deregister"
[ "$left" = 3 ] || fail "shard0 counted $left workers leaving, want 3"
grep -q "w1 left the job (exit 0" "$OUT.stdout" || fail "the launcher did not report w1 leaving"

kill -INT $LOCAL_PID; wait $LOCAL_PID; rc=$?; LOCAL_PID=""
[ $rc = 0 ] || fail "paragan_local exited $rc"
grep -q '"ok": true' "$OUT/summary.json" || fail "the run's summary is not ok"
# Versions only move forward in the progress lines.
sed -n 's/^\[ *[0-9]*m[0-9]*s\] G step \([0-9]*\).*/\1/p' "$OUT.stdout" |
  awk 'NR > 1 && $1 < last {bad = 1} {last = $1} END {exit bad}' || fail "a G step went backwards"
# Accounting: what the workers say each shard accepted (async: applied)
# against the versions the shards stopped at (a fresh run starts at 0).
n_workers=$(ls "$OUT"/logs/w*.log | wc -l)
[ "$n_workers" = 6 ] || fail "want 6 workers over the run (w0..w5), found $n_workers"
for s in 0 1; do
  read -r g d < <(sed -n 's/.*G version \([0-9]*\), D version \([0-9]*\).*/\1 \2/p' "$OUT/logs/shard$s.log" | tail -1)
  [ -n "${d:-}" ] || fail "shard$s did not report its final versions"
  for t in D G; do
    sum=$(sed -n "s/.*accepted pushes by shard:.* $t=\([0-9,]*\).*/\1/p" "$OUT"/logs/w*.log |
          awk -F, -v s=$s '{n += $(s + 1)} END {print n + 0}')
    lines=$(grep -c "accepted pushes by shard" "$OUT"/logs/w*.log | awk -F: '{n += $2} END {print n}')
    [ "$lines" = 6 ] || fail "only $lines of 6 workers reported their pushes"
    want=$([ $t = D ] && echo "$d" || echo "$g")
    [ "$sum" = "$want" ] || fail "shard$s table $t: workers' accepted pushes $sum != version $want"
    echo "ok: shard$s table $t: workers' accepted pushes = version = $sum"
  done
done
echo PASS

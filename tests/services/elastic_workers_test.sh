#!/usr/bin/env bash
# Changing the worker count of a running job, as `kubectl scale` does: a
# paragan_local run (async, 2 shards, the data service, 1 worker) trains;
# a second worker started by hand with the same flags (its own id and seed)
# joins it: both shards register it and its pushes are applied (its steps
# and the shards' push counts grow). Then it is SIGKILLed, as a pod on a
# lost node: the shards drop it when its lease expires, the first worker
# goes on, and the run ends ok.
#   args: paragan_local paragan_server paragan_data paragan_worker paragan_sample paragan_init
set -uo pipefail
LOCAL=$1
source "$(dirname "$0")/bin_dir.sh"
source "$(dirname "$0")/run_probes.sh"
BIN=$(make_bin_dir "${@:2:5}")
command -v curl >/dev/null || { echo "SKIP: curl is missing"; exit 0; }
T=${TEST_TMPDIR:-$(mktemp -d)}/elastic
rm -rf "$T"; mkdir -p "$T"
OUT=$T/run
EXTRA_PID=""
cleanup() { [ -n "$EXTRA_PID" ] && kill -9 "$EXTRA_PID" 2>/dev/null; [ -n "${LOCAL_PID:-}" ] && kill -INT "$LOCAL_PID" 2>/dev/null; wait 2>/dev/null; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; for f in "$OUT.stdout" "$T"/w9.log "$OUT"/logs/shard0.log; do [ -f "$f" ] && { echo "== $f"; tail -20 "$f"; }; done; exit 1; }
LEASE=6
"$LOCAL" --bin_dir="$BIN" --dataset=synthetic --data_dir= --batch_size=8 --num_workers=1 \
  --num_shards=2 --minutes=2.5 --steps=0 --progress_s=5 --threads_per_worker=1 \
  --worker_lease_s=$LEASE --num_samples=64 --out_dir="$OUT" > "$OUT.stdout" 2>&1 &
LOCAL_PID=$!
registered() {  # shard want
  [ "$(shard_metric "$1" 'paragan_ps_registered_workers{shard="'"$1"'",table="D"}')" = "$2" ]
}
w0_steps() { grep -Eq '^\[ *[0-9]+m[0-9]{2}s\] G step [1-9]' "$OUT.stdout"; }
wait_for 120 "w0 trains" w0_steps
wait_for 10 "shard0 has 1 worker" registered 0 1
# The second worker: w0's own command line, with its own id, seed and port file.
W0_PID=$(pgrep -f -- "--worker_id=w0" | head -1)
[ -n "$W0_PID" ] || fail "no w0 process"
mapfile -d '' ARGV < "/proc/$W0_PID/cmdline"
EXTRA=()
for a in "${ARGV[@]}"; do
  case $a in
    --worker_id=*) EXTRA+=(--worker_id=w9) ;;
    --seed=*) EXTRA+=(--seed=99) ;;
    --metrics_port_file=*) EXTRA+=(--metrics_port_file="$T/w9.metrics_port") ;;
    *) EXTRA+=("$a") ;;
  esac
done
pushes_before=$(shard_metric 0 'paragan_ps_pushes_total')
"${EXTRA[@]}" > "$T/w9.log" 2>&1 &
EXTRA_PID=$!
echo "started w9 (pid $EXTRA_PID) beside the running job"
wait_for 60 "shard0 has 2 workers" registered 0 2
wait_for 10 "shard1 has 2 workers" registered 1 2
w9_steps() {
  local p; p=$(cat "$T/w9.metrics_port" 2>/dev/null) || return 1
  local n; n=$(curl -s --max-time 2 "http://127.0.0.1:$p/metrics" | awk '/^paragan_worker_steps_total/ {print $2}')
  [ -n "$n" ] && awk "BEGIN{exit !($n >= 5)}"
}
wait_for 90 "w9 makes 5 steps" w9_steps
pushes_mid=$(shard_metric 0 'paragan_ps_pushes_total')
echo "ok: w9 joined: both shards hold 2 workers, w9 stepped; shard0 pushes $pushes_before -> $pushes_mid"
kill -9 $EXTRA_PID; wait $EXTRA_PID 2>/dev/null; EXTRA_PID=""
t_kill=$SECONDS
wait_for $((LEASE * 4 + 10)) "the shards drop w9 after its lease" registered 0 1
wait_for 10 "shard1 drops w9" registered 1 1
echo "ok: w9 dropped $((SECONDS - t_kill))s after SIGKILL (lease ${LEASE}s)"
g_then=$(shard_metric 0 'paragan_ps_table_version{shard="0",table="G"}')
sleep 5
g_now=$(shard_metric 0 'paragan_ps_table_version{shard="0",table="G"}')
awk "BEGIN{exit !($g_now > $g_then)}" || fail "G stopped at $g_then after w9 left"
echo "ok: training goes on with w0 (G $g_then -> $g_now)"
wait $LOCAL_PID; rc=$?; LOCAL_PID=""
[ $rc = 0 ] || fail "paragan_local exited $rc"
grep -q '"ok": true' "$OUT/summary.json" || fail "the run's summary is not ok"
echo PASS

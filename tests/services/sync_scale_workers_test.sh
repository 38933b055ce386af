#!/usr/bin/env bash
# A synchronous run (--mode=sync, 2 workers, 2 shards, staleness bound 0:
# a late push is refused) scaled 2 -> 1 workers with paragan_local
# --scale_workers: each shard's rounds follow the registered workers, 2
# pushes a round (1 pending, then 1 that applies the mean), then 1, none
# refused as late; growing it again is refused with the reason (a worker
# joining running rounds can deadlock them: its first D step meets the
# others' G round).
# The shards never restart, the run ends ok, and its images/s counts the
# batches the rounds really took: the D pushes the workers say shard0
# accepted (not D versions times --num_workers, twice too many while 1
# worker trained).
#   args: paragan_local paragan_server paragan_data paragan_worker paragan_sample paragan_init
set -uo pipefail
LOCAL=$1
source "$(dirname "$0")/bin_dir.sh"
source "$(dirname "$0")/run_probes.sh"
BIN=$(make_bin_dir "${@:2:5}")
command -v curl >/dev/null || { echo "SKIP: curl is missing"; exit 0; }
T=${TEST_TMPDIR:-$(mktemp -d)}/sync_scale
rm -rf "$T"; mkdir -p "$T"
OUT=$T/run
cleanup() { [ -n "${LOCAL_PID:-}" ] && kill -INT "$LOCAL_PID" 2>/dev/null; wait 2>/dev/null; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; for f in "$OUT.stdout" "$OUT"/logs/shard0.log "$OUT"/logs/w1.log; do [ -f "$f" ] && { echo "== $f"; tail -25 "$f"; }; done; exit 1; }
"$LOCAL" --bin_dir="$BIN" --dataset=synthetic --data_dir= --batch_size=8 --num_workers=2 \
  --mode=sync --staleness_bound=0 --num_shards=2 --minutes=5 --steps=0 --progress_s=5 \
  --threads_per_worker=1 --worker_lease_s=30 --num_samples=64 --out_dir="$OUT" > "$OUT.stdout" 2>&1 &
LOCAL_PID=$!
d_pushes() {  # shard outcome
  shard_metric "$1" 'paragan_ps_pushes_total{outcome="'"$2"'",shard="'"$1"'",table="D"}'
}
applied_since() {  # shard from want: at least want D rounds applied since from
  local now; now=$(d_pushes "$1" applied) || return 1
  awk "BEGIN{exit !($now - $2 >= $3)}"
}
# Pending pushes per applied D round on shard S over a window of at least
# 10 rounds: workers - 1 when every round takes one push per worker.
pending_per_round() {  # shard
  local p0 a0 p1 a1
  p0=$(d_pushes "$1" pending); a0=$(d_pushes "$1" applied)
  wait_for 120 "10 D rounds on shard$1" applied_since "$1" "$a0" 10
  p1=$(d_pushes "$1" pending); a1=$(d_pushes "$1" applied)
  awk "BEGIN{printf \"%.2f\", ($p1 - $p0) / ($a1 - $a0)}"
}

wait_for 120 "2 workers registered" registered_on_two_shards 2
wait_for 120 "training starts" applied_since 0 0 3
SHARDS=$(shard_pids)
[ -n "$SHARDS" ] || fail "no shard processes"
for s in 0 1; do
  r=$(pending_per_round $s)
  awk "BEGIN{exit !($r >= 0.7 && $r <= 1.3)}" || fail "2 workers: shard$s has $r pending pushes per round, want 1"
  echo "ok: 2 workers: shard$s: $r pending pushes per round"
done

scale_workers 1
wait_for 20 "only 1 worker registered" registered_on_two_shards 1
wait_for 60 "rounds go on" applied_since 0 "$(d_pushes 0 applied)" 2
r=$(pending_per_round 0)
awk "BEGIN{exit !($r <= 0.1)}" || fail "1 worker: shard0 has $r pending pushes per round, want 0"
echo "ok: 1 worker: shard0: $r pending pushes per round"
# Growing a sync run is refused, saying why (a joining worker can deadlock
# the rounds), and changes nothing.
"$LOCAL" --out_dir="$OUT" --scale_workers=2 > "$T/grow.out" 2>&1 && fail "a sync run grew"
grep -q "scales down only" "$T/grow.out" || fail "no clear error for growing a sync run: $(cat "$T/grow.out")"
registered_on_two_shards 1 || fail "the refused scale-up changed the workers"
wait_for 60 "rounds go on" applied_since 0 "$(d_pushes 0 applied)" 5
for s in 0 1; do
  stale=$(shard_metric $s 'paragan_ps_rejected_pushes_total{reason="stale"')
  [ "$stale" = 0 ] || fail "shard$s refused $stale late pushes"
done
echo "ok: no push refused as late on either shard"
sleep 15  # more of the run's batches in rounds of 1

[ "$(shard_pids)" = "$SHARDS" ] || fail "the shards restarted: $SHARDS -> $(shard_pids)"

kill -INT $LOCAL_PID; wait $LOCAL_PID; rc=$?; LOCAL_PID=""
[ $rc = 0 ] || fail "paragan_local exited $rc"
grep -q '"ok": true' "$OUT/summary.json" || fail "the run's summary is not ok"
# images/s x training seconds / batch = the batches the rounds took: the D
# pushes the workers say shard0 accepted, less at most one round's pending
# one (1) at the stop, within the summary's rounding.
img_s=$(sed -n 's/.*"images_per_s": \([0-9.]*\).*/\1/p' "$OUT/summary.json")
train_s=$(sed -n 's/.*"train_s": \([0-9.]*\).*/\1/p' "$OUT/summary.json")
[ -n "$img_s" ] && [ -n "$train_s" ] || fail "no images_per_s or train_s in summary.json"
batches=$(awk "BEGIN{printf \"%.0f\", $img_s * $train_s / 8}")
accepted=$(sed -n 's/.*accepted pushes by shard: D=\([0-9]*\),.*/\1/p' "$OUT"/logs/w*.log | awk '{n += $1} END {print n + 0}')
[ "$(grep -c "accepted pushes by shard" "$OUT"/logs/w*.log | awk -F: '{n += $2} END {print n}')" = 2 ] ||
  fail "not both workers (w0, w1) reported their accepted pushes"
awk "BEGIN{exit !($batches >= $accepted - 3 && $batches <= $accepted + 1)}" ||
  fail "the summary counts $batches batches ($img_s images/s over ${train_s}s), the workers' D pushes accepted by shard0 are $accepted"
echo "ok: the summary's $img_s images/s over ${train_s}s = $batches batches, the workers' accepted D pushes on shard0 $accepted"
echo PASS

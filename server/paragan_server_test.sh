#!/bin/bash
# paragan_server as a process: starts on free ports, serves /metrics,
# checkpoints on SIGTERM, restores on restart, refuses a corrupt checkpoint.
set -u
BIN="$1"
T="${TEST_TMPDIR:-$(mktemp -d)}"
DIR="$T/ckpt"
fail() { echo "FAIL: $*"; for f in "$T"/out*.txt; do echo "== $f"; cat "$f"; done; exit 1; }

start() {  # start <log>; sets PID, PORT, MPORT
  "$BIN" --port=0 --metrics_port=0 --bind_address=127.0.0.1 --shard_id=1 \
    --num_shards=2 --model=dcgan32 --checkpoint_dir="$DIR" \
    --checkpoint_interval_s=0 --port_file="$T/port" >"$1" 2>&1 &
  PID=$!
  for _ in $(seq 300); do
    grep -q "metrics on port" "$1" && break
    kill -0 "$PID" 2>/dev/null || fail "server exited early"
    sleep 0.1
  done
  PORT=$(sed -n 's/.*listening on port \([0-9]*\).*/\1/p' "$1")
  MPORT=$(sed -n 's/.*metrics on port \([0-9]*\).*/\1/p' "$1")
  [ -n "$PORT" ] && [ -n "$MPORT" ] || fail "no ports printed"
  [ "$(cat "$T/port")" = "$PORT" ] || fail "port file differs"
}

start "$T/out1.txt"
curl -sf "http://127.0.0.1:$MPORT/metrics" >"$T/metrics.txt" || fail "metrics fetch"
grep -q '^paragan_ps_table_version{shard="1",table="G"} 0' "$T/metrics.txt" ||
  fail "table version gauge missing: $(cat "$T/metrics.txt")"
grep -q '^paragan_process_resident_memory_bytes' "$T/metrics.txt" || fail "memory gauge"
kill -TERM "$PID"
wait "$PID" || fail "exit status $? after SIGTERM"
[ -f "$DIR/shard-1-of-2.pgt" ] || fail "no checkpoint written on SIGTERM"
grep -q "checkpoint (exit)" "$T/out1.txt" || fail "no exit checkpoint line"

start "$T/out2.txt"
grep -q "restored from checkpoint" "$T/out2.txt" || fail "not restored"
kill -INT "$PID"
wait "$PID" || fail "exit status $? after SIGINT"

# Corrupt checkpoint: refuse to start.
printf 'garbage' | dd of="$DIR/shard-1-of-2.pgt" bs=1 seek=200 conv=notrunc 2>/dev/null
"$BIN" --port=0 --shard_id=1 --num_shards=2 --model=dcgan32 \
  --checkpoint_dir="$DIR" >"$T/out3.txt" 2>&1 && fail "started on a corrupt checkpoint"
grep -q "cannot restore" "$T/out3.txt" || fail "no restore error message"

# Bad flags.
"$BIN" --shard_id=2 --num_shards=2 >"$T/out4.txt" 2>&1 && fail "accepted shard_id 2 of 2"
"$BIN" --staleness_policy=sometimes >"$T/out5.txt" 2>&1 && fail "accepted a bad policy"
echo PASS

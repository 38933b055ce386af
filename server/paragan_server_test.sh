#!/bin/bash
# paragan_server as a process: starts on free ports, serves /metrics,
# checkpoints on SIGTERM, restores on restart, skips a corrupt newest
# checkpoint for the previous one, refuses when every one is corrupt,
# a missing or wrong --init file and bad flags.
set -u
BIN="$1"; INIT_BIN="$2"
T="${TEST_TMPDIR:-$(mktemp -d)}"
DIR="$T/ckpt"
INIT="$T/init.pgt"
fail() { echo "FAIL: $*"; for f in "$T"/out*.txt; do echo "== $f"; cat "$f"; done; exit 1; }
"$INIT_BIN" --model=dcgan32 --out="$INIT" >"$T/out0.txt" 2>&1 || fail "paragan_init"

start() {  # start <log>; sets PID, PORT, MPORT
  "$BIN" --port=0 --metrics_port=0 --bind_address=127.0.0.1 --shard_id=1 \
    --num_shards=2 --init="$INIT" --checkpoint_dir="$DIR" \
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
# A shard checkpoint is no network file.
"$BIN" --port=0 --init="$DIR/shard-1-of-2.pgt" >"$T/out7.txt" 2>&1 && fail "took a checkpoint as --init"
grep -q "not a network file written by paragan_init" "$T/out7.txt" || fail "no network-file error"

# Two exits, two checkpoints: a corrupt newest one is skipped for the one
# before it (SIGKILL: no exit checkpoint rotates the files).
[ -f "$DIR/shard-1-of-2.pgt.1" ] || fail "the previous checkpoint was not kept"
printf 'garbage' | dd of="$DIR/shard-1-of-2.pgt" bs=1 seek=200 conv=notrunc 2>/dev/null
start "$T/out8.txt"
grep -q "skipped a checkpoint: DATA_LOSS: .*shard-1-of-2.pgt: checksum mismatch" "$T/out8.txt" ||
  fail "no line about the skipped corrupt checkpoint"
grep -q "restored from checkpoint $DIR/shard-1-of-2.pgt.1" "$T/out8.txt" ||
  fail "not restored from the previous checkpoint"
kill -KILL "$PID"
wait "$PID" 2>/dev/null
# Every checkpoint corrupt: refuse to start.
printf 'garbage' | dd of="$DIR/shard-1-of-2.pgt.1" bs=1 seek=200 conv=notrunc 2>/dev/null
"$BIN" --port=0 --shard_id=1 --num_shards=2 --init="$INIT" \
  --checkpoint_dir="$DIR" >"$T/out3.txt" 2>&1 && fail "started on corrupt checkpoints"
grep -q "cannot restore.*every checkpoint is corrupt or torn" "$T/out3.txt" ||
  fail "no restore error message"

# Bad flags.
"$BIN" --shard_id=2 --num_shards=2 >"$T/out4.txt" 2>&1 && fail "accepted shard_id 2 of 2"
"$BIN" --init="$INIT" --staleness_policy=sometimes >"$T/out5.txt" 2>&1 && fail "accepted a bad policy"
grep -q "unknown staleness policy 'sometimes'" "$T/out5.txt" || fail "no policy error"
"$BIN" --port=0 >"$T/out6.txt" 2>&1 && fail "started without --init"
grep -q -- "--init is required" "$T/out6.txt" || fail "no --init error"
echo PASS

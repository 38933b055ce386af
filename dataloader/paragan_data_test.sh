#!/bin/bash
# paragan_data as a process: prints its ports, serves batches to a client,
# exposes /metrics, exits 0 on SIGTERM and SIGINT, exits 1 on bad flags and a
# missing dataset.
set -u
BIN="$1"
FETCH="$2"
T="${TEST_TMPDIR:-$(mktemp -d)}"
fail() { echo "FAIL: $*"; for f in "$T"/out*.txt; do echo "== $f"; cat "$f"; done; exit 1; }

start() {  # start <log> <metrics_port> <flags...>; sets PID, PORT, MPORT
  local log="$1" mflag="$2"; shift 2
  local want="^paragan_data: metrics on port [0-9]*$"
  [ "$mflag" = -1 ] && want="^paragan_data: listening on port [0-9]*$"
  "$BIN" --port=0 --metrics_port="$mflag" --bind_address=127.0.0.1 "$@" >"$log" 2>&1 &
  PID=$!
  for _ in $(seq 300); do
    grep -q "$want" "$log" && break
    kill -0 "$PID" 2>/dev/null || fail "paragan_data exited early"
    sleep 0.1
  done
  PORT=$(sed -n 's/^paragan_data: listening on port \([0-9]*\)$/\1/p' "$log")
  MPORT=$(sed -n 's/^paragan_data: metrics on port \([0-9]*\)$/\1/p' "$log")
  [ -n "$PORT" ] || fail "no port line printed"
  [ "$mflag" = -1 ] || [ -n "$MPORT" ] || fail "no metrics port line printed"
}

# With a per-stream byte budget of 100 Mbit/s: 40 batches of 64 KB are held
# back ~0.2 s in all.
start "$T/out1.txt" 0 --dataset=synthetic --synthetic_size=512 --batch_size=16 --seed=3 \
  --link_max_mbit_per_s=100 --budget_burst_ms=10
grep -qx "paragan_data: dispatch policy round_robin" "$T/out1.txt" || fail "no dispatch policy line"
grep -qx "paragan_data: data byte budget no cap in all, 100 Mbit/s per stream (burst 10 ms)" \
  "$T/out1.txt" || fail "no byte budget line: $(cat "$T/out1.txt")"
"$FETCH" --address="127.0.0.1:$PORT" --worker_id=w7 --batches=40 >"$T/out_fetch.txt" 2>&1 ||
  fail "fetch failed: $(cat "$T/out_fetch.txt")"
grep -q "40 batches, 640 images \[16, 1, 32, 32\]" "$T/out_fetch.txt" || fail "fetch summary"
grep -q "epoch 1$" "$T/out_fetch.txt" || fail "40 batches of 16 from 512 reach epoch 1"
curl -sf "http://127.0.0.1:$MPORT/metrics" >"$T/metrics.txt" || fail "metrics fetch"
for m in 'paragan_data_batches_sent_total{worker="w7"}' \
         'paragan_data_bytes_sent_total{worker="w7"}' \
         'paragan_data_delivery_latency_seconds_count{worker="w7"} 40' \
         'paragan_data_credit_wait_seconds_count{worker="w7"}' \
         'paragan_data_in_flight_batches 0' \
         'paragan_data_requeued_batches_total' \
         'paragan_data_generated_batches_accepted_total 0' \
         'paragan_data_generated_batches_dropped_total 0' \
         'paragan_data_epoch 1' \
         'paragan_data_budget_wait_seconds_total{worker="w7"}' \
         'paragan_process_resident_memory_bytes'; do
  grep -qF "$m" "$T/metrics.txt" || fail "metric '$m' missing: $(cat "$T/metrics.txt")"
done
# SIGTERM while a worker streams: exit 0 at once; the worker retries, then
# gives up naming the address.
"$FETCH" --address="127.0.0.1:$PORT" --worker_id=busy --batches=1000000000 \
  --max_retry_seconds=1 >"$T/out_busy.txt" 2>&1 &
FPID=$!
sleep 0.5
kill -0 "$FPID" 2>/dev/null || fail "busy fetch ended early: $(cat "$T/out_busy.txt")"
START=$(date +%s)
kill -TERM "$PID"
wait "$PID" || fail "exit status $? after SIGTERM"
[ $(( $(date +%s) - START )) -le 3 ] || fail "SIGTERM took more than 3 s"
grep -q "stopping" "$T/out1.txt" || fail "no stopping line"
wait "$FPID" && fail "fetch succeeded without a service"
grep -q "127.0.0.1:$PORT unreachable" "$T/out_busy.txt" ||
  fail "fetch error does not name the address: $(cat "$T/out_busy.txt")"

# Fashion-MNIST when it is installed (the default dataset), stopped by SIGINT.
FM="${PARAGAN_FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}"
if [ -f "$FM/train-images-idx3-ubyte.gz" ]; then
  start "$T/out2.txt" -1 --data_dir="$FM"
  grep -q "fashion_mnist, 60000 images 1x32x32, 10 classes" "$T/out2.txt" || fail "fashion_mnist"
  kill -INT "$PID"
  wait "$PID" || fail "exit status $? after SIGINT"
fi

# Bad flags and a missing dataset: exit 1, naming the flag or the path.
expect_exit1() {  # expect_exit1 <text> <flags...>
  local text="$1"; shift
  "$BIN" --port=0 --metrics_port=-1 "$@" >"$T/out_bad.txt" 2>&1
  local rc=$?
  [ "$rc" = 1 ] || fail "exit $rc (want 1) for $*"
  grep -qF -- "$text" "$T/out_bad.txt" || fail "no '$text' for $*: $(cat "$T/out_bad.txt")"
}
expect_exit1 "--batch_size" --dataset=synthetic --batch_size=0
expect_exit1 "--prefetch" --dataset=synthetic --prefetch=0
expect_exit1 "unknown dataset 'nope'" --dataset=nope
expect_exit1 "/no/such/dir" --dataset=fashion_mnist --data_dir=/no/such/dir
# --data_path is the deprecated alias of --data_dir: it works with a warning,
# and the two disagreeing is an error.
expect_exit1 "/no/such/alias" --dataset=fashion_mnist --data_path=/no/such/alias
grep -q -- "warning: --data_path is deprecated, use --data_dir" "$T/out_bad.txt" ||
  fail "no deprecation warning: $(cat "$T/out_bad.txt")"
expect_exit1 "disagree" --dataset=fashion_mnist --data_dir=/a --data_path=/b
expect_exit1 "channels" --dataset=synthetic --channels=2
expect_exit1 "--max_mbit_per_s must be in [0, 1e9) megabits per second (0: no cap), got -5" \
  --dataset=synthetic --max_mbit_per_s=-5
expect_exit1 "--link_max_mbit_per_s must be in" --dataset=synthetic --link_max_mbit_per_s=nan
expect_exit1 "--budget_burst_ms must be in [0, 60000]" --dataset=synthetic --budget_burst_ms=-1
expect_exit1 "--dispatch_policy=nope: unknown dispatch policy 'nope'; known: congestion_aware, round_robin" \
  --dataset=synthetic --dispatch_policy=nope
# --help lists the flags (they live in main.cc) and the known policies.
"$BIN" --help >"$T/out_help.txt" 2>&1
grep -q -- "--dispatch_policy" "$T/out_help.txt" || fail "--help: $(cat "$T/out_help.txt")"
grep -q "Dispatch policies (--dispatch_policy): congestion_aware, round_robin" "$T/out_help.txt" ||
  fail "--help lists no policies: $(cat "$T/out_help.txt")"
echo PASS

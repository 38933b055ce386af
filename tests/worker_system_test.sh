#!/bin/bash
# paragan_worker against real paragan_server processes on localhost.
#   worker_system_test.sh <paragan_server> <paragan_worker> <paragan_init> <scenario>
# scenarios:
#   async        two asynchronous workers train a few hundred steps: losses
#                finite, D(real) > D(fake) on average over the second half,
#                G's loss moves, versions count every accepted push; metrics
#                served; SIGTERM exits 0 within 5 s.
#   kill_worker  one of two workers is killed (SIGKILL) mid-run: the other
#                keeps training and versions keep advancing; a new worker joins.
#   reject       two asynchronous workers against reject_above_bound with
#                bound 0: refused stale pushes are counted (progress lines,
#                metrics) and skipped, and both workers finish.
#   restart_shard  a shard is killed (SIGKILL) and restarted from its last
#                checkpoint on the same port: the worker retries, re-registers,
#                and versions continue from the checkpoint's.
set -u
SERVER="$1"; WORKER="$2"; INIT="$3"; SCENARIO="$4"
T="${TEST_TMPDIR:-$(mktemp -d)}/$SCENARIO"
rm -rf "$T"; mkdir -p "$T"
"$INIT" --model=dcgan32 --seed=3 --out="$T/init.pgt" >"$T/init.out" 2>&1 ||
  { cat "$T/init.out"; echo "FAIL: paragan_init"; exit 1; }
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; }
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  for f in "$T"/*.log; do echo "== $f"; tail -n 40 "$f"; done
  exit 1
}
source "$(dirname "$0")/wait_log.sh"
# start_server <shard> <num_shards> <log> [port] [flags...]; sets SPID, SPORT
start_server() {
  local shard=$1 n=$2 log=$3 port=$4; shift 4
  rm -f "$T/port$shard"
  "$SERVER" --port="$port" --bind_address=127.0.0.1 --shard_id="$shard" \
    --num_shards="$n" --init="$T/init.pgt" --port_file="$T/port$shard" \
    "$@" >"$log" 2>&1 &
  SPID=$!
  PIDS+=("$SPID")
  wait_log "$log" "listening on port" 30 || fail "server $shard did not start"
  SPORT=$(sed -n 's/.*listening on port \([0-9]*\).*/\1/p' "$log" | tail -n 1)
}
# start_worker <id> <log> [flags...]; sets WPID
start_worker() {
  local id=$1 log=$2; shift 2
  "$WORKER" --worker_id="$id" --ps="$PS" --dataset=synthetic \
    --synthetic_size=512 --data_seed=5 --batch_size=16 --threads=1 \
    --cpu_layout=blocked \
    --log_every=10 "$@" >"$log" 2>&1 &
  WPID=$!
  PIDS+=("$WPID")
}
steps_of() {  # last step printed in a worker log
  sed -n 's/^progress .* step=\([0-9]*\) .*/\1/p' "$1" | tail -n 1
}
field() {  # field <log> <name>: that field of the last progress line
  grep '^progress' "$1" | tail -n 1 | tr ' ' '\n' | sed -n "s/^$2=//p"
}
# stop_worker <pid> <log>: SIGTERM, exit 0 within 5 s, done line printed
stop_worker() {
  local start=$(date +%s%N)
  kill -TERM "$1"
  local i
  for i in $(seq 60); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$1" 2>/dev/null && fail "worker $1 still running 6 s after SIGTERM"
  wait "$1"; local rc=$?
  local ms=$((($(date +%s%N) - start) / 1000000))
  echo "worker $1 stopped in $ms ms (exit $rc)"
  [ "$rc" = 0 ] || fail "worker exit status $rc after SIGTERM"
  [ "$ms" -lt 5000 ] || fail "worker took $ms ms to stop"
  grep -q "done after" "$2" || fail "no done line in $2"
}

case "$SCENARIO" in
async)
  start_server 0 2 "$T/s0.log" 0 --staleness_policy=scale_by_inverse_staleness
  P0=$SPORT
  start_server 1 2 "$T/s1.log" 0 --staleness_policy=scale_by_inverse_staleness
  PS="127.0.0.1:$P0,127.0.0.1:$SPORT"
  STEPS=200
  start_worker wa "$T/wa.log" --steps=$STEPS --seed=1 --metrics_port=0; WA=$WPID
  start_worker wb "$T/wb.log" --steps=$STEPS --seed=2; WB=$WPID
  wait_log "$T/wa.log" "metrics on port" 30 || fail "no metrics line"
  MPORT=$(sed -n 's/.*metrics on port \([0-9]*\).*/\1/p' "$T/wa.log")
  wait_log "$T/wa.log" "^progress .* step=50 " 120 || fail "wa slow"
  curl -sf "http://127.0.0.1:$MPORT/metrics" >"$T/metrics.txt" || fail "metrics fetch"
  for m in paragan_worker_images_total paragan_worker_steps_total \
    paragan_worker_discriminator_loss paragan_worker_generator_loss 'paragan_worker_pushes_total{table="D"' \
    'paragan_worker_pulls_total{table="G"' paragan_worker_push_bytes_total \
    paragan_worker_pull_bytes_total paragan_worker_push_latency_seconds_bucket \
    paragan_worker_pull_latency_seconds_bucket paragan_worker_staleness_bucket \
    paragan_worker_rejected_pushes_total paragan_worker_retries_total \
    paragan_process_resident_memory_bytes; do
    grep -qF "$m" "$T/metrics.txt" || fail "metric $m missing"
  done
  for w in $WA $WB; do
    for i in $(seq 1200); do kill -0 $w 2>/dev/null || break; sleep 0.1; done
    wait $w || fail "worker $w exit status $?"
  done
  for l in "$T/wa.log" "$T/wb.log"; do
    grep -q "registered with 2 shards (tensors over their data planes)" "$l" ||
      fail "$l: tensors did not go over the shards' data planes"
    grep -q "done after $STEPS steps" "$l" || fail "$l: no done line"
    [ "$(grep -c '^progress' "$l")" = $((STEPS / 10)) ] || fail "$l: progress lines"
    grep -q '^progress worker=[^ ]* step=[0-9]* d_version=[0-9]* g_version=[0-9]* img_s=[0-9.]* d_loss=[-0-9.]* g_loss=[-0-9.]* d_real=[-0-9.]* d_fake=[-0-9.]* staleness_d=[0-9.]* staleness_g=[0-9.]* rejected=[0-9]*$' "$l" ||
      fail "$l: progress line format"
  done
  # Second half of both workers' lines: finite, D(real) > D(fake), G moves.
  cat "$T/wa.log" "$T/wb.log" | grep '^progress' | awk -v half=$((STEPS / 2)) '
    { for (i = 2; i <= NF; ++i) { split($i, kv, "="); f[kv[1]] = kv[2] }
      if (f["d_loss"] !~ /^-?[0-9.]+$/ || f["g_loss"] !~ /^-?[0-9.]+$/) bad = 1
      if (f["step"] + 0 > half) { n++; real += f["d_real"]; fake += f["d_fake"];
        g[n] = f["g_loss"]; gs += f["g_loss"]; st += f["staleness_d"] } }
    END { if (bad) { print "non-finite loss"; exit 1 }
      gm = gs / n; for (i = 1; i <= n; ++i) var += (g[i] - gm) ^ 2
      printf "second half: %d lines, mean D(real) %.3f D(fake) %.3f, G loss mean %.3f sd %.3f, mean D staleness %.2f\n",
        n, real / n, fake / n, gm, sqrt(var / n), st / n
      if (real / n <= fake / n) { print "D does not separate real from fake"; exit 1 }
      if (sqrt(var / n) < 1e-3) { print "G loss frozen"; exit 1 } }' || fail "training check"
  grep -h "time:" "$T/wa.log" "$T/wb.log"
  # Every accepted push is one step (staleness-scaled): D reaches 2 x 200.
  kill -TERM $(jobs -p) 2>/dev/null; sleep 0.2
  for l in "$T/s0.log" "$T/s1.log"; do
    wait_log "$l" "bye" 20 || fail "server did not stop"
    D=$(sed -n 's/.*D version \([0-9]*\); bye.*/\1/p' "$l")
    G=$(sed -n 's/.*G version \([0-9]*\),.*bye.*/\1/p' "$l")
    echo "$l: G version $G, D version $D"
    [ "$D" -ge $((2 * STEPS)) ] && [ "$G" -ge $((2 * STEPS)) ] || fail "versions $G/$D"
  done
  ;;
kill_worker)
  start_server 0 2 "$T/s0.log" 0
  P0=$SPORT
  start_server 1 2 "$T/s1.log" 0
  PS="127.0.0.1:$P0,127.0.0.1:$SPORT"
  start_worker wa "$T/wa.log" --seed=1; WA=$WPID
  start_worker wb "$T/wb.log" --seed=2; WB=$WPID
  wait_log "$T/wa.log" "^progress .* step=30 " 120 || fail "wa slow"
  kill -9 $WA
  wait $WA 2>/dev/null
  B0=$(steps_of "$T/wb.log"); V0=$(field "$T/wb.log" d_version)
  echo "killed wa; wb at step $B0, D version $V0"
  wait_log "$T/wb.log" "^progress .* step=$((B0 + 40)) " 120 || fail "wb stopped training"
  V1=$(field "$T/wb.log" d_version)
  [ "$V1" -gt "$V0" ] || fail "versions stuck at $V0"
  start_worker wc "$T/wc.log" --seed=3; WC=$WPID
  wait_log "$T/wc.log" "registered with 2 shards" 30 || fail "wc did not register"
  wait_log "$T/wc.log" "^progress .* step=20 " 120 || fail "wc does not train"
  V2=$(field "$T/wc.log" d_version)
  echo "wb went on to D version $V1; wc joined and reached step 20 at D version $V2"
  [ "$V2" -gt "$V1" ] || fail "wc version $V2 not past $V1"
  stop_worker $WB "$T/wb.log"
  stop_worker $WC "$T/wc.log"
  ;;
reject)
  for s in 0 1; do
    start_server $s 2 "$T/s$s.log" 0 --staleness_policy=reject_above_bound \
      --staleness_bound=0
    PORTS[$s]=$SPORT
  done
  PS="127.0.0.1:${PORTS[0]},127.0.0.1:${PORTS[1]}"
  STEPS=60
  start_worker wa "$T/wa.log" --steps=$STEPS --seed=1 --metrics_port=0; WA=$WPID
  start_worker wb "$T/wb.log" --steps=$STEPS --seed=2; WB=$WPID
  wait_log "$T/wa.log" "metrics on port" 30 || fail "no metrics line"
  MPORT=$(sed -n 's/.*metrics on port \([0-9]*\).*/\1/p' "$T/wa.log")
  wait_log "$T/wa.log" "^progress .* step=$((STEPS - 10)) " 120 || fail "wa slow"
  curl -sf "http://127.0.0.1:$MPORT/metrics" >"$T/metrics.txt" || fail "metrics fetch"
  for w in $WA $WB; do
    for i in $(seq 1200); do kill -0 $w 2>/dev/null || break; sleep 0.1; done
    wait $w || fail "worker $w exit status $?"
  done
  RA=$(field "$T/wa.log" rejected); RB=$(field "$T/wb.log" rejected)
  M=$(sed -n 's/^paragan_worker_rejected_pushes_total{worker="wa"} \([0-9.e+]*\)$/\1/p' "$T/metrics.txt")
  echo "refused pushes: wa $RA, wb $RB (wa's metric at step $((STEPS - 10)): $M)"
  [ $((RA + RB)) -gt 0 ] || fail "no refused push counted"
  [ -n "$M" ] || fail "no rejected_pushes_total metric"
  grep -q "done after $STEPS steps" "$T/wa.log" || fail "wa did not finish"
  grep -q "done after $STEPS steps" "$T/wb.log" || fail "wb did not finish"
  ;;
restart_shard)
  CK="$T/ckpt"
  start_server 0 2 "$T/s0.log" 0 --checkpoint_dir="$CK" --checkpoint_interval_s=1
  P0=$SPORT
  start_server 1 2 "$T/s1.log" 0 --checkpoint_dir="$CK" --checkpoint_interval_s=1
  P1=$SPORT; S1=$SPID
  PS="127.0.0.1:$P0,127.0.0.1:$P1"
  start_worker wa "$T/wa.log" --seed=1; WA=$WPID
  wait_log "$T/wa.log" "^progress .* step=40 " 120 || fail "wa slow"
  wait_log "$T/s1.log" "checkpoint \(interval\)" 10 || fail "no interval checkpoint"
  kill -9 $S1
  wait $S1 2>/dev/null
  K=$(steps_of "$T/wa.log")
  echo "killed shard 1 with the worker at step $K"
  sleep 2
  start_server 1 2 "$T/s1b.log" "$P1" --checkpoint_dir="$CK" --checkpoint_interval_s=1 \
    --metrics_port=0
  S1=$SPID
  grep -q "restored from checkpoint" "$T/s1b.log" || fail "shard 1 not restored"
  RD=$(sed -n 's/.*D: .* version \([0-9]*\) (restored.*/\1/p' "$T/s1b.log")
  echo "shard 1 restored at D version $RD"
  [ "$RD" -gt 0 ] || fail "restored D version $RD"
  wait_log "$T/wa.log" "^progress .* step=$((K + 40)) " 120 || fail "worker did not carry on"
  grep -q "retrying" "$T/wa.log" || fail "no retry logged"
  # The restarted shard's data plane has a new port: the worker learns it
  # when it registers again, and its tensors go back to the data plane.
  wait_log "$T/s1b.log" "metrics on port" 10 || fail "no metrics line"
  M1=$(sed -n 's/.*metrics on port \([0-9]*\).*/\1/p' "$T/s1b.log")
  curl -sf "http://127.0.0.1:$M1/metrics" >"$T/s1b_metrics.txt" || fail "metrics fetch"
  grep -qE '^paragan_ps_data_plane_connections\{shard="1"\} [1-9]' "$T/s1b_metrics.txt" ||
    fail "the worker did not come back to shard 1's data plane: $(grep data_plane "$T/s1b_metrics.txt")"
  stop_worker $WA "$T/wa.log"
  kill -TERM $S1
  wait_log "$T/s1b.log" "bye" 20 || fail "shard 1 did not stop"
  D=$(sed -n 's/.*D version \([0-9]*\); bye.*/\1/p' "$T/s1b.log")
  echo "shard 1: D version $RD after restart, $D at the end"
  [ "$D" -ge $((RD + 30)) ] || fail "D version did not continue from $RD ($D)"
  ;;
*) fail "unknown scenario $SCENARIO" ;;
esac
echo PASS

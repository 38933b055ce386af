#!/usr/bin/env bash
# Chaos run: DCGAN-32 trains through the services (2 parameter-server shards
# with checkpoints on a small tmpfs, the data service, 3 asynchronous
# workers that journal every push) while a seeded schedule of faults runs:
#   - every 30 s a random worker is SIGKILLed and restarted a few s later;
#   - a shard is SIGKILLed and restarted (from its newest checkpoint);
#   - a shard is SIGKILLed as it finishes a checkpoint, and that newest file
#     is truncated (a crash mid-write): the restart must use the previous one;
#   - the data service is SIGKILLed and restarted;
#   - the checkpoint disk is filled once, then freed.
# Then the faults stop, the job trains to its step count and stops, and
# check_chaos.py checks the run and prints the table (exit 1 on a failure).
#
#   chaos_run.sh paragan_server paragan_data paragan_worker paragan_init \
#       checkpoint_finite check_chaos.py
# Environment: CHAOS_MINUTES (2), CHAOS_SEED (1), CHAOS_STEPS (G version the
# job must reach; 300 per minute), CHAOS_OUT (a directory to keep; default
# under TEST_TMPDIR).
set -uo pipefail
if [ -z "${CHAOS_IN_NS:-}" ] && [ "$(id -u)" = 0 ] && unshare -m true 2>/dev/null; then
  # A private mount namespace: the checkpoint tmpfs is this run's alone.
  exec env CHAOS_IN_NS=1 unshare -m --propagation private bash "$0" "$@"
fi
SERVER=$1 DATA=$2 WORKER=$3 INIT=$4 FINITE=$5 CHECK=$6
MINUTES=${CHAOS_MINUTES:-2}
SEED=${CHAOS_SEED:-1}
DURATION=$(awk "BEGIN{printf \"%d\", $MINUTES * 60}")
STEPS=${CHAOS_STEPS:-$((5 * DURATION))}
T=${CHAOS_OUT:-${TEST_TMPDIR:-$(mktemp -d)}/chaos}
INTERVAL=4        # checkpoint interval (s)
NUM_WORKERS=3
RANDOM=$SEED
rm -rf "$T"; mkdir -p "$T/logs" "$T/journal" "$T/ckpt"
CK=$T/ckpt
EV=$T/events.txt
: > "$EV"
now_ns() { date +%s%N; }
event() { echo "$(now_ns) $*" >> "$EV"; echo "[$(( SECONDS ))s] $*"; }
declare -A PID
cleanup() {
  for p in "${PID[@]}"; do kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
  mountpoint -q "$CK" && umount "$CK" 2>/dev/null
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  for f in "$T"/logs/*.log; do echo "== $f"; tail -n 15 "$f"; done
  exit 1
}
source "$(dirname "$0")/../wait_log.sh"

if [ -n "${CHAOS_DATA_DIR:-}" ]; then
  DATA_FLAGS=(--dataset=fashion_mnist --data_dir="$CHAOS_DATA_DIR")
elif [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  DATA_FLAGS=(--dataset=fashion_mnist --data_dir=/usr/share/datasets/fashion-mnist)
else
  DATA_FLAGS=(--dataset=synthetic --synthetic_size=2048)
fi

"$INIT" --model=dcgan32 --seed=3 --out="$T/init.pgt" > "$T/logs/init.log" 2>&1 ||
  fail "paragan_init"
# The checkpoint disk: room for every file the shards keep (3 each, and the
# one being written) and a little more, so that filling it is quick.
INIT_BYTES=$(stat -c %s "$T/init.pgt")
CK_MB=$(( (INIT_BYTES * 20) / 1048576 + 8 ))
TMPFS=0
if [ -n "${CHAOS_IN_NS:-}" ] && mount -t tmpfs -o size=${CK_MB}m paragan-chaos "$CK"; then
  TMPFS=1
  echo "checkpoints on a ${CK_MB} MiB tmpfs at $CK"
else
  echo "no tmpfs (not root?): the disk-full fault is left out"
fi

# ---- The services ----
declare -A PORT LOGN
start_shard() {  # shard port
  local s=$1 port=$2
  LOGN[s$s]=$(( ${LOGN[s$s]:-0} + 1 ))
  local log="$T/logs/shard$s.${LOGN[s$s]}.log"
  event shard_start shard=$s log=$log
  "$SERVER" --bind_address=127.0.0.1 --port="$port" --shard_id=$s --num_shards=2 \
    --init="$T/init.pgt" --checkpoint_dir="$CK" --checkpoint_interval_s=$INTERVAL \
    --keep_checkpoints=3 --checkpoint_retry_s=1 --worker_lease_s=10 \
    --metrics_port=0 > "$log" 2>&1 &
  PID[s$s]=$!
  wait_log "$log" "listening on port" 30 || fail "shard $s did not start"
  PORT[s$s]=$(sed -n 's/.*listening on port \([0-9]*\).*/\1/p' "$log" | tail -n 1)
  wait_log "$log" "metrics on port" 10 || fail "shard $s serves no metrics"
  PORT[m$s]=$(sed -n 's/.*metrics on port \([0-9]*\).*/\1/p' "$log" | tail -n 1)
  SLOG[$s]=$log
  event shard_up shard=$s port=${PORT[s$s]}
}
start_data() {  # port
  LOGN[data]=$(( ${LOGN[data]:-0} + 1 ))
  local log="$T/logs/data.${LOGN[data]}.log"
  "$DATA" --bind_address=127.0.0.1 --port="$1" --metrics_port=-1 \
    "${DATA_FLAGS[@]}" --batch_size=16 --seed=5 > "$log" 2>&1 &
  PID[data]=$!
  wait_log "$log" "listening on port" 60 || fail "the data service did not start"
  PORT[data]=$(sed -n 's/.*listening on port \([0-9]*\).*/\1/p' "$log" | tail -n 1)
  event data_up port=${PORT[data]}
}
start_worker() {  # index
  local w=w$1
  LOGN[$w]=$(( ${LOGN[$w]:-0} + 1 ))
  "$WORKER" --worker_id=$w --ps="127.0.0.1:${PORT[s0]},127.0.0.1:${PORT[s1]}" \
    --data="127.0.0.1:${PORT[data]}" --model=dcgan32 --batch_size=16 --threads=1 \
    --seed=$((100 * $1 + ${LOGN[$w]})) --log_every=20 --steps=0 \
    --push_journal="$T/journal/$w.txt" \
    > "$T/logs/$w.${LOGN[$w]}.log" 2>&1 &
  PID[$w]=$!
  event worker_up worker=$w
}
declare -a SLOG
g_version() {  # shard: its G version now, from its metrics
  curl -s --max-time 2 "http://127.0.0.1:${PORT[m$1]}/metrics" |
    sed -n 's/^paragan_ps_table_version{shard="'"$1"'",table="G"} \([0-9.e+]*\)$/\1/p' |
    awk '{printf "%d", $1}'
}
intact() { "$FINITE" "$1" > /dev/null 2>&1; }
# The file a restart must use: the newest that reads back whole.
newest_intact() {  # shard
  local base="$CK/shard-$1-of-2.pgt" f
  for f in "$base.new" "$base" "$base.1" "$base.2"; do
    [ -f "$f" ] && intact "$f" && { echo "$f"; return; }
  done
  echo none
}
checkpoints_written() { grep -c "checkpoint (interval) $CK" "${SLOG[$1]}"; }

start_shard 0 0
start_shard 1 0
start_data 0
for i in $(seq 0 $((NUM_WORKERS - 1))); do start_worker $i; done
wait_log "$T/logs/w0.1.log" "^progress" 180 || fail "w0 made no progress"
event chaos_begin seed=$SEED minutes=$MINUTES steps=$STEPS interval=$INTERVAL

# ---- The schedule (seeded) ----
kill_shard() {  # shard why
  local s=$1
  event shard_kill shard=$s why=$2 g_version=$(g_version $s)
  kill -9 "${PID[s$s]}"; wait "${PID[s$s]}" 2>/dev/null
  event shard_dead shard=$s
}
restart_shard() {  # shard
  local s=$1 expect; expect=$(newest_intact $s)
  local mtime=0; [ -f "$expect" ] && mtime=$(stat -c %.9Y "$expect" | tr -d .)
  event shard_expect shard=$s file=$expect mtime_ns=$mtime
  sleep 2
  start_shard $s "${PORT[s$s]}"
}
fault_shard() {
  local s=$((RANDOM % 2))
  kill_shard $s plain
  restart_shard $s
}
fault_torn() {
  local s=$((RANDOM % 2)) n; n=$(checkpoints_written $s)
  for _ in $(seq $((INTERVAL * 30))); do
    [ "$(checkpoints_written $s)" -gt "$n" ] && break; sleep 0.1
  done
  kill_shard $s torn
  local f="$CK/shard-$s-of-2.pgt" size; size=$(stat -c %s "$f")
  truncate -s $((size / 2)) "$f"
  event checkpoint_torn shard=$s file=$f bytes=$size kept=$((size / 2))
  restart_shard $s
}
fault_data() {
  event data_kill
  kill -9 "${PID[data]}"; wait "${PID[data]}" 2>/dev/null
  sleep 2
  start_data "${PORT[data]}"
}
fault_disk() {
  [ $TMPFS = 1 ] || { event disk_full_skipped why=no_tmpfs; return; }
  local before0 before1
  before0=$(grep -c "checkpoint (interval) failed" "${SLOG[0]}")
  before1=$(grep -c "checkpoint (interval) failed" "${SLOG[1]}")
  dd if=/dev/zero of="$CK/filler" bs=1M 2>/dev/null
  event disk_full free_kb=$(df -k --output=avail "$CK" | tail -n 1 | tr -d ' ')
  local s
  for s in 0 1; do
    local b; b=$([ $s = 0 ] && echo $before0 || echo $before1)
    for _ in $(seq $((INTERVAL * 40))); do
      [ "$(grep -c "checkpoint (interval) failed" "${SLOG[$s]}")" -gt "$b" ] && break
      sleep 0.1
    done
    event checkpoint_failed shard=$s seen=$(($(grep -c "checkpoint (interval) failed" "${SLOG[$s]}") - b)) \
      newest=$(newest_intact $s)
  done
  local ok0 ok1
  ok0=$(checkpoints_written 0); ok1=$(checkpoints_written 1)
  rm -f "$CK/filler"
  event disk_freed
  for _ in $(seq $((INTERVAL * 40))); do
    [ "$(checkpoints_written 0)" -gt "$ok0" ] && [ "$(checkpoints_written 1)" -gt "$ok1" ] && break
    sleep 0.1
  done
  event checkpoint_resumed shard0=$(($(checkpoints_written 0) - ok0)) shard1=$(($(checkpoints_written 1) - ok1))
}
fault_worker() {
  local i=$((RANDOM % NUM_WORKERS))
  event worker_kill worker=w$i
  kill -9 "${PID[w$i]}"; wait "${PID[w$i]}" 2>/dev/null
  sleep $((2 + RANDOM % 3))
  start_worker $i
}
# Event times (s after chaos_begin): a worker every 30 s, the others at
# fixed fractions of the run, each with a seeded jitter.
SCHEDULE=()
for ((t = 15 + RANDOM % 5; t < DURATION; t += 30)); do SCHEDULE+=("$t worker"); done
SCHEDULE+=("$((DURATION * 20 / 100 + RANDOM % 4)) shard")
SCHEDULE+=("$((DURATION * 40 / 100 + RANDOM % 4)) torn")
SCHEDULE+=("$((DURATION * 60 / 100 + RANDOM % 4)) data")
SCHEDULE+=("$((DURATION * 75 / 100 + RANDOM % 4)) disk")
mapfile -t SCHEDULE < <(printf '%s\n' "${SCHEDULE[@]}" | sort -n)
echo "schedule (seed $SEED): ${SCHEDULE[*]}"
T0=$SECONDS
for e in "${SCHEDULE[@]}"; do
  at=${e%% *}; what=${e#* }
  while [ $((SECONDS - T0)) -lt "$at" ]; do sleep 0.2; done
  fault_$what
  for i in $(seq 0 $((NUM_WORKERS - 1))); do
    kill -0 "${PID[w$i]}" 2>/dev/null || fail "worker w$i died on its own"
  done
done
while [ $((SECONDS - T0)) -lt "$DURATION" ]; do sleep 0.5; done
event chaos_end

# ---- To the step count, then a clean stop ----
for _ in $(seq 600); do
  [ "$(g_version 0)" -ge "$STEPS" ] 2>/dev/null && break
  sleep 0.5
done
event steps_done g_version=$(g_version 0)
for i in $(seq 0 $((NUM_WORKERS - 1))); do kill -TERM "${PID[w$i]}"; done
for i in $(seq 0 $((NUM_WORKERS - 1))); do wait "${PID[w$i]}"; done
for s in 0 1; do kill -TERM "${PID[s$s]}"; done
for s in 0 1; do wait_log "${SLOG[$s]}" "; bye" 30 || fail "shard $s did not stop"; done
kill -TERM "${PID[data]}"; wait "${PID[data]}" 2>/dev/null
event end
"$FINITE" "$CK"/shard-0-of-2.pgt "$CK"/shard-1-of-2.pgt > "$T/finite.txt" 2>&1
echo "finite_rc=$?" >> "$T/finite.txt"
python3 "$CHECK" --dir="$T" --interval_s=$INTERVAL --steps=$STEPS --tmpfs=$TMPFS

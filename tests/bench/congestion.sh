#!/bin/bash
# Congestion-aware data delivery, A/B on shaped links (issue 14).
#
# Network namespaces: the data service in one, each simulated worker
# (paragan_data_fetch --consume_ms) in its own, joined to the service's by a
# veth pair whose service -> worker direction tc tbf shapes, optionally with
# an iperf3 bulk flow sharing it. Each scenario runs today's wire
# (round_robin, float32, no compression, 4 credits), the compact wire alone
# (uint8, round_robin, 4 credits) and the adaptive one (congestion_aware,
# uint8, lz4/zstd, a budget of 16 credits).
#
#   bazel build //dataloader:paragan_data //dataloader:paragan_data_fetch
#   sudo tests/bench/congestion.sh            # all scenarios
#   sudo tests/bench/congestion.sh shared     # one: shared | step | four |
#                                             #   plain | budget
#
# Needs root, ip netns, tc (tbf) and iperf3 (deploy/setup.sh installs them).
# Addresses are 10.199.<link>.1/2 inside the namespaces it creates; nothing
# else.
set -u
cd "$(dirname "$0")/../.."
BIN=${BIN:-bazel-bin/dataloader}
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-20}
CONSUME_MS=${CONSUME_MS:-5}
PORT=50970
SRV=pg_bench_srv
LINKS=4  # worker namespaces pg_bench_w1..4

skip() { echo "congestion.sh: skipped: $*"; exit 0; }
[ "$(id -u)" = 0 ] || skip "needs root (ip netns, tc)"
command -v tc >/dev/null && command -v ip >/dev/null || skip "no iproute2"
command -v iperf3 >/dev/null || skip "no iperf3"
[ -x $BIN/paragan_data ] && [ -x $BIN/paragan_data_fetch ] ||
  skip "build //dataloader:paragan_data and :paragan_data_fetch first"

wrk() { echo pg_bench_w$1; }
cleanup() {
  for ns in $SRV $(for i in $(seq $LINKS); do wrk $i; done); do
    ip netns pids $ns 2>/dev/null | xargs -r kill 2>/dev/null
    ip netns del $ns 2>/dev/null
  done
}
trap cleanup EXIT
cleanup
ip netns add $SRV || skip "ip netns add failed"
ip -n $SRV link set lo up
for i in $(seq $LINKS); do
  ip netns add "$(wrk $i)"
  ip link add pgs$i netns $SRV type veth peer name pgw$i netns "$(wrk $i)"
  ip -n $SRV addr add 10.199.$i.1/24 dev pgs$i
  ip -n "$(wrk $i)" addr add 10.199.$i.2/24 dev pgw$i
  ip -n "$(wrk $i)" link set lo up
  ip -n $SRV link set pgs$i up
  ip -n "$(wrk $i)" link set pgw$i up
done

shape() {  # LINK RATE, e.g. 1 50mbit; "" removes the shaper
  ip netns exec $SRV tc qdisc del dev pgs$1 root 2>/dev/null
  [ -z "$2" ] && return
  # 100 ms of queue at the bottleneck: a switch buffer a bulk flow fills.
  ip netns exec $SRV tc qdisc add dev pgs$1 root tbf rate "$2" burst 64kb \
    latency 100ms
}

# fetch WORKER DTYPE COMPRESSION CREDITS: worker WORKER, on link WORKER
# (or on link 1 with ONE_LINK=1); its lines go to /tmp/pg_bench_fetchW.log.
fetch() {
  local link=$1
  [ -n "${ONE_LINK:-}" ] && link=1
  ip netns exec "$(wrk $link)" $BIN/paragan_data_fetch \
    --address=10.199.$link.1:$PORT --worker_id=w$1 \
    --seconds="$SECONDS_PER_RUN" --consume_ms="$CONSUME_MS" \
    --progress_s="${PROGRESS_S:-0}" \
    --image_dtype="$2" --compression="$3" --credits="$4" \
    >/tmp/pg_bench_fetch$1.log 2>&1
}

# run LABEL POLICY DTYPE COMPRESSION CREDITS WORKERS [step] [bulk]
run() {
  local label=$1 policy=$2 dtype=$3 comp=$4 credits=$5 workers=$6
  local step=${7:-} bulk=${8:-}
  ip netns exec $SRV $BIN/paragan_data --port=$PORT --metrics_port=-1 \
    --data_dir="$DATA" --dispatch_policy="$policy" ${DATA_FLAGS:-} \
    >/tmp/pg_bench_srv.log 2>&1 &
  local srv=$!
  sleep 1.5
  local iperf=""
  if [ -n "$bulk" ]; then
    ip netns exec "$(wrk 1)" iperf3 -s -1 -p 50971 >/dev/null 2>&1 &
    sleep 0.3
    ip netns exec $SRV iperf3 -c 10.199.1.2 -p 50971 \
      -t $((SECONDS_PER_RUN + 3)) >/tmp/pg_bench_iperf.log 2>&1 &
    iperf=$!
    sleep 1
  fi
  local stepper=""
  if [ -n "$step" ]; then
    (sleep $((SECONDS_PER_RUN / 3)); shape 1 20mbit
     sleep $((SECONDS_PER_RUN / 3)); shape 1 200mbit) &
    stepper=$!
  fi
  local pids=""
  for i in $(seq "$workers"); do
    fetch "$i" "$dtype" "$comp" "$credits" &
    pids="$pids $!"
  done
  # (A bare `wait` would also wait for the data service, which never exits.)
  wait $pids
  [ -n "$iperf" ] && wait "$iperf" 2>/dev/null
  [ -n "$stepper" ] && wait "$stepper" 2>/dev/null
  kill $srv 2>/dev/null; wait $srv 2>/dev/null
  local bulk_rate=""
  [ -n "$bulk" ] && bulk_rate=" | iperf3 $(grep -E 'sender' /tmp/pg_bench_iperf.log |
    awk '{print $7, $8}')"
  for i in $(seq "$workers"); do
    [ -n "${PROGRESS_S:-}" ] && grep ' t=' /tmp/pg_bench_fetch$i.log |
      sed "s/^paragan_data_fetch: /    w$i /"
    local out
    out=$(tail -1 /tmp/pg_bench_fetch$i.log)
    printf '%-34s w%s %s%s\n' "$label" "$i" "${out#paragan_data_fetch: }" \
      "$bulk_rate"
  done
  # Every worker's wire bytes over the longest fetch: what the link gave the
  # data.
  local mbit
  mbit=$(for i in $(seq "$workers"); do tail -1 /tmp/pg_bench_fetch$i.log; done |
    sed -n 's/^paragan_data_fetch: \([0-9.]*\) s,.* \([0-9.]*\) MB on the wire.*/\1 \2/p' |
    awk '{mb += $2; if ($1 > t) t = $1} END {if (t > 0) printf "%.1f", mb * 8 / t}')
  printf '%-34s all data %s Mbit/s on the wire%s\n' "$label" "$mbit" \
    "$bulk_rate"
}

# all SCENARIO WORKERS STEP BULK RATE1 [RATE2..]: the three pipelines.
all() {
  local scenario=$1 workers=$2 step=$3 bulk=$4
  shift 4
  local rates=("$@")
  echo "== $scenario (consume ${CONSUME_MS} ms/batch of 64, ${SECONDS_PER_RUN} s)"
  for pipeline in "today: rr float32 none c4|round_robin float32 none 4" \
    "compact: rr uint8 none c4|round_robin uint8 none 4" \
    "adaptive: ca uint8 lz4,zstd c${ADAPTIVE_CREDITS:-16}|congestion_aware uint8 lz4,zstd ${ADAPTIVE_CREDITS:-16}"; do
    for i in $(seq "$workers"); do shape "$i" "${rates[$((i - 1))]}"; done
    # shellcheck disable=SC2086
    run "${pipeline%%|*}" ${pipeline#*|} "$workers" "$step" "$bulk"
  done
}

shared() { all "50 Mbit/s shared with an iperf3 bulk flow" 1 "" bulk 50mbit; }
step() { PROGRESS_S=${PROGRESS_S:-1} all "200 -> 20 -> 200 Mbit/s (thirds)" 1 step "" 200mbit; }
# Each worker needs 64 x 1024 B x 1000 / CONSUME_MS of pixels: at 20 ms,
# 26 Mbit/s as uint8, 105 as float32; w1's link is a tenth of the others'.
four() {
  CONSUME_MS=${FOUR_CONSUME_MS:-20} all \
    "4 workers, w1 on 10 Mbit/s, w2-w4 on 100 Mbit/s" 4 "" "" \
    10mbit 100mbit 100mbit 100mbit
}
plain() { all "unshaped veth" 1 "" "" ""; }
# Data must not starve the gradient traffic of the same host: 8 greedy data
# streams (today's wire, no consumption) and one bulk TCP flow standing for
# gradient pulls share worker 1's 50 Mbit/s link, without a data byte budget
# and with one of 20 and of 10 Mbit/s (--max_mbit_per_s).
budget() {
  echo "== ${BUDGET_STREAMS:-8} data streams and a bulk flow on one 50 Mbit/s link (${SECONDS_PER_RUN} s)"
  shape 1 50mbit
  for cap in 0 20 10; do
    CONSUME_MS=0 ONE_LINK=1 DATA_FLAGS="--max_mbit_per_s=$cap" \
      run "data cap ${cap} Mbit/s (0: none)" round_robin float32 none 4 "${BUDGET_STREAMS:-8}" "" bulk
  done
}

case "${1:-all}" in
  shared | step | four | plain | budget) "$1" ;;
  all) shared; step; four; plain; budget ;;
  *) echo "usage: $0 [shared|step|four|plain|budget|all]" >&2; exit 2 ;;
esac

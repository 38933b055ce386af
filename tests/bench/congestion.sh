#!/bin/bash
# Congestion-aware data delivery, A/B on shaped links (issue 14).
#
# Two network namespaces joined by a veth pair; the data service in one, a
# simulated worker (paragan_data_fetch --consume_ms) in the other; tc tbf
# shapes the service -> worker direction, optionally with an iperf3 bulk
# flow sharing it. Each scenario runs today's wire (round_robin, float32,
# no compression, 4 credits), the compact wire alone (uint8, round_robin,
# 4 credits) and the adaptive one (congestion_aware, uint8, lz4/zstd, a
# budget of 16 credits).
#
#   bazel build //dataloader:paragan_data //dataloader:paragan_data_fetch
#   sudo tests/bench/congestion.sh            # all scenarios
#   sudo tests/bench/congestion.sh shared     # one: shared | step | plain
# Known problem: the "step" scenario hung on its first run (2026-12-03);
# not yet debugged (the rate-change subshell or iperf-less wait).
#
# Needs root, ip netns, tc (tbf) and iperf3 (deploy/setup.sh installs them).
# Addresses are 10.199.0.1/2 inside the namespaces it creates; nothing else.
set -u
cd "$(dirname "$0")/../.."
BIN=bazel-bin/dataloader
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-20}
CONSUME_MS=${CONSUME_MS:-5}
PORT=50970
SRV=pg_bench_srv
WRK=pg_bench_wrk

skip() { echo "congestion.sh: skipped: $*"; exit 0; }
[ "$(id -u)" = 0 ] || skip "needs root (ip netns, tc)"
command -v tc >/dev/null && command -v ip >/dev/null || skip "no iproute2"
command -v iperf3 >/dev/null || skip "no iperf3"
[ -x $BIN/paragan_data ] && [ -x $BIN/paragan_data_fetch ] ||
  skip "build //dataloader:paragan_data and :paragan_data_fetch first"

cleanup() {
  ip netns pids $SRV 2>/dev/null | xargs -r kill 2>/dev/null
  ip netns pids $WRK 2>/dev/null | xargs -r kill 2>/dev/null
  ip netns del $SRV 2>/dev/null
  ip netns del $WRK 2>/dev/null
}
trap cleanup EXIT
cleanup
ip netns add $SRV && ip netns add $WRK || skip "ip netns add failed"
ip link add pgb0 netns $SRV type veth peer name pgb1 netns $WRK
ip -n $SRV addr add 10.199.0.1/24 dev pgb0
ip -n $WRK addr add 10.199.0.2/24 dev pgb1
for ns in $SRV $WRK; do ip -n $ns link set lo up; done
ip -n $SRV link set pgb0 up
ip -n $WRK link set pgb1 up

shape() {  # rate, e.g. 50mbit; "" removes the shaper
  ip netns exec $SRV tc qdisc del dev pgb0 root 2>/dev/null
  [ -z "$1" ] && return
  # 100 ms of queue at the bottleneck: a switch buffer a bulk flow fills.
  ip netns exec $SRV tc qdisc add dev pgb0 root tbf rate "$1" burst 64kb \
    latency 100ms
}

# run LABEL POLICY DTYPE COMPRESSION CREDITS [step] [bulk]
run() {
  local label=$1 policy=$2 dtype=$3 comp=$4 credits=$5 step=${6:-} bulk=${7:-}
  ip netns exec $SRV $BIN/paragan_data --port=$PORT --metrics_port=-1 \
    --data_dir="$DATA" --dispatch_policy="$policy" >/tmp/pg_bench_srv.log 2>&1 &
  local srv=$!
  sleep 1.5
  local iperf=""
  if [ -n "$bulk" ]; then
    ip netns exec $WRK iperf3 -s -1 -p 50971 >/dev/null 2>&1 &
    sleep 0.3
    ip netns exec $SRV iperf3 -c 10.199.0.2 -p 50971 \
      -t $((SECONDS_PER_RUN + 3)) >/tmp/pg_bench_iperf.log 2>&1 &
    iperf=$!
    sleep 1
  fi
  if [ -n "$step" ]; then
    (sleep $((SECONDS_PER_RUN / 3)); shape 20mbit
     sleep $((SECONDS_PER_RUN / 3)); shape 200mbit) &
  fi
  local out
  out=$(ip netns exec $WRK $BIN/paragan_data_fetch --address=10.199.0.1:$PORT \
    --seconds="$SECONDS_PER_RUN" --consume_ms="$CONSUME_MS" \
    --image_dtype="$dtype" --compression="$comp" --credits="$credits" | tail -1)
  wait 2>/dev/null $iperf
  kill $srv 2>/dev/null; wait $srv 2>/dev/null
  local bulk_rate=""
  [ -n "$bulk" ] && bulk_rate=" | iperf3 $(grep -E 'sender' /tmp/pg_bench_iperf.log |
    awk '{print $7, $8}')"
  printf '%-34s %s%s\n' "$label" "${out#paragan_data_fetch: }" "$bulk_rate"
}

all() {
  local scenario=$1 rate=$2 step=${3:-} bulk=${4:-}
  echo "== $scenario (consume ${CONSUME_MS} ms/batch of 64, ${SECONDS_PER_RUN} s)"
  shape "$rate"; run "today: rr float32 none c4" round_robin float32 none 4 "$step" "$bulk"
  shape "$rate"; run "compact: rr uint8 none c4" round_robin uint8 none 4 "$step" "$bulk"
  shape "$rate"; run "adaptive: ca uint8 lz4,zstd c16" congestion_aware uint8 lz4,zstd 16 "$step" "$bulk"
}

case "${1:-all}" in
  shared) all "50 Mbit/s shared with an iperf3 bulk flow" 50mbit "" bulk ;;
  step) all "200 -> 20 -> 200 Mbit/s (thirds)" 200mbit step ;;
  plain) all "unshaped veth" "" ;;
  all)
    all "50 Mbit/s shared with an iperf3 bulk flow" 50mbit "" bulk
    all "200 -> 20 -> 200 Mbit/s (thirds)" 200mbit step
    all "unshaped veth" ""
    ;;
  *) echo "usage: $0 [shared|step|plain|all]" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# A real congested link: paragan_data in one network namespace, a worker
# (paragan_data_fetch, 5 ms per batch of 64) in another, the veth between
# them limited to 20 Mbit/s by tc tbf with 100 ms of queue. Today's wire
# (round_robin, float32, 4 credits) is link-bound; congestion_aware on the
# compact wire must fill the same link with compressed uint8 batches: more
# than 4x the images/s (uint8 alone is 4x fewer bytes), compression chosen
# (decoded/wire above the 4 of uint8), and the link kept at least 80% busy.
# Addresses 10.198.<n>.1/2 exist only inside the namespaces it creates.
#   args: paragan_data paragan_data_fetch
# Skips (saying why) without root, ip netns, tc tbf or Fashion-MNIST.
set -uo pipefail
export PATH="$PATH:/usr/sbin:/sbin"  # ip and tc (the test env has /bin:/usr/bin)
DATA_BIN=$(readlink -f "$1")
FETCH_BIN=$(readlink -f "$2")
skip() { echo "SKIP: $*"; exit 0; }
fail() { echo "FAIL: $*"; [ -f "$T/srv.log" ] && tail -5 "$T/srv.log"; exit 1; }
DATA=${PARAGAN_FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
[ -f "$DATA/train-images-idx3-ubyte.gz" ] ||
  skip "no Fashion-MNIST at $DATA (apt-get install dataset-fashion-mnist)"
[ "$(id -u)" = 0 ] || skip "needs root to create network namespaces"
command -v ip >/dev/null && command -v tc >/dev/null || skip "no iproute2 (ip, tc)"
T=${TEST_TMPDIR:-$(mktemp -d)}
SUBNET=$((100 + $$ % 100))  # distinct namespaces and subnet per run
SRV=pg_cl_srv_$$
WRK=pg_cl_wrk_$$
cleanup() {
  for ns in $SRV $WRK; do
    ip netns pids $ns 2>/dev/null | xargs -r kill 2>/dev/null
    ip netns del $ns 2>/dev/null
  done
}
trap cleanup EXIT
ip netns add $SRV 2>/dev/null && ip netns add $WRK 2>/dev/null ||
  skip "ip netns add failed (no CAP_SYS_ADMIN or no netns support here)"
ip link add pgcl$$ netns $SRV type veth peer name pgcw$$ netns $WRK ||
  skip "cannot create a veth pair"
ip -n $SRV addr add 10.198.$SUBNET.1/24 dev pgcl$$
ip -n $WRK addr add 10.198.$SUBNET.2/24 dev pgcw$$
for ns in $SRV $WRK; do ip -n $ns link set lo up; done
ip -n $SRV link set pgcl$$ up
ip -n $WRK link set pgcw$$ up
RATE_BYTES=2500000  # 20 Mbit/s
ip netns exec $SRV tc qdisc add dev pgcl$$ root tbf rate 20mbit burst 64kb latency 100ms ||
  skip "tc tbf is not available"

PORT=50980
# run POLICY DTYPE COMPRESSION CREDITS SECONDS: prints the fetch summary line.
run() {
  ip netns exec $SRV "$DATA_BIN" --port=$PORT --metrics_port=-1 \
    --data_dir="$DATA" --dispatch_policy="$1" >"$T/srv.log" 2>&1 &
  local srv=$!
  local out
  out=$(ip netns exec $WRK "$FETCH_BIN" --address=10.198.$SUBNET.1:$PORT \
    --max_retry_seconds=20 --seconds="$5" --consume_ms=5 \
    --image_dtype="$2" --compression="$3" --credits="$4" 2>&1)
  local rc=$?
  kill $srv 2>/dev/null
  wait $srv 2>/dev/null
  [ $rc = 0 ] || fail "paragan_data_fetch ($1 $2 $3) exited $rc: $out"
  echo "$out" | tail -1
}
# field LINE REGEX: the number before REGEX in a summary line.
field() { echo "$1" | grep -oE "[0-9.]+ $2" | head -1 | awk '{print $1}'; }

TODAY=$(run round_robin float32 none 4 6) || exit 1
echo "today:    $TODAY"
ADAPTIVE=$(run congestion_aware uint8 lz4,zstd 16 8) || exit 1
echo "adaptive: $ADAPTIVE"

today_ips=$(field "$TODAY" "images/s")
ips=$(field "$ADAPTIVE" "images/s")
secs=$(field "$ADAPTIVE" "s,")
wire_mb=$(field "$ADAPTIVE" "MB on the wire")
ratio=$(echo "$ADAPTIVE" | grep -oE '\(x[0-9.]+\)' | tr -d '(x)')
[ -n "$today_ips" ] && [ -n "$ips" ] && [ -n "$wire_mb" ] && [ -n "$ratio" ] ||
  fail "could not parse the summaries"
awk -v a="$ips" -v t="$today_ips" 'BEGIN { exit !(a > 4 * t) }' ||
  fail "adaptive $ips images/s is not above 4x today's $today_ips"
awk -v r="$ratio" 'BEGIN { exit !(r > 4.5) }' ||
  fail "decoded/wire x$ratio: the congested link got no compression"
# The first second is connection set-up and the window's ramp.
awk -v mb="$wire_mb" -v s="$secs" -v cap="$RATE_BYTES" \
  'BEGIN { exit !(mb * 1e6 / s >= 0.8 * cap) }' ||
  fail "the link carried $wire_mb MB in $secs s: below 80% of 20 Mbit/s"
echo "PASS: today $today_ips images/s; adaptive $ips images/s, x$ratio decoded/wire, $wire_mb MB in $secs s"

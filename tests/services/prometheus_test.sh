#!/usr/bin/env bash
# A real Prometheus scrapes the services: one parameter-server shard, and the
# data service and a worker when their binaries are given. Prometheus (Debian
# package `prometheus`, not installed by this test) scrapes every metrics
# port each second; the test waits until `up == 1` for every target through
# Prometheus' HTTP API, checks that metrics of every service are queryable,
# and runs `promtool check metrics` on each endpoint's text.
#   args: paragan_init paragan_server [paragan_data [paragan_worker]]
set -uo pipefail
PROMETHEUS=${PROMETHEUS:-/usr/bin/prometheus}
PROMTOOL=${PROMTOOL:-/usr/bin/promtool}
if [ ! -x "$PROMETHEUS" ]; then
  echo "SKIP: $PROMETHEUS is missing (Debian package 'prometheus'; add it to deploy/setup.sh)"
  exit 0
fi
command -v curl >/dev/null || { echo "SKIP: curl is missing"; exit 0; }
INIT=$1; SERVER=$2; DATA=${3:-}; WORKER=${4:-}
TMP=${TEST_TMPDIR:-$(mktemp -d)}/prom
rm -rf "$TMP"; mkdir -p "$TMP"
"$INIT" --model=dcgan32 --out="$TMP/init.pgt" >"$TMP/init.log" 2>&1 ||
  { cat "$TMP/init.log"; echo "FAIL: paragan_init"; exit 1; }
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  for f in "$TMP"/*.log; do echo "== $f"; tail -15 "$f"; done
  exit 1
}
# Waits for "<marker> <port>" in a log; prints the port.
port_from() {  # log marker
  for _ in $(seq 1 600); do
    p=$(sed -n "s/.*$2 \([0-9][0-9]*\).*/\1/p" "$1" | head -1)
    [ -n "$p" ] && { echo "$p"; return 0; }
    sleep 0.1
  done
  return 1
}
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

TARGETS=()   # name=port
"$SERVER" --bind_address=127.0.0.1 --port=0 --metrics_port=0 --init="$TMP/init.pgt" \
  --shard_id=0 --num_shards=1 --checkpoint_interval_s=0 > "$TMP/shard.log" 2>&1 &
PIDS+=($!)
PS_PORT=$(port_from "$TMP/shard.log" "listening on port") || fail "shard did not start"
M=$(port_from "$TMP/shard.log" "metrics on port") || fail "shard printed no metrics port"
TARGETS+=("shard=$M")
DATA_ADDR=""
if [ -n "$DATA" ] && [ -x "$DATA" ]; then
  "$DATA" --bind_address=127.0.0.1 --port=0 --metrics_port=0 --dataset=synthetic \
    --batch_size=8 > "$TMP/data.log" 2>&1 &
  PIDS+=($!)
  DP=$(port_from "$TMP/data.log" "listening on port") || fail "data service did not start"
  DATA_ADDR=127.0.0.1:$DP
  M=$(port_from "$TMP/data.log" "metrics on port") || fail "data service printed no metrics port"
  TARGETS+=("data=$M")
else
  echo "note: no data service binary: scraping without it"
fi
if [ -n "$WORKER" ] && [ -x "$WORKER" ]; then
  WDATA=(--data="$DATA_ADDR")
  if [ -z "$DATA_ADDR" ] || grep -q "no data service client yet" "$(readlink -f "$WORKER")"; then
    WDATA=(--data= --dataset=synthetic)
  fi
  "$WORKER" --worker_id=w0 --ps=127.0.0.1:$PS_PORT "${WDATA[@]}" --batch_size=8 \
    --threads=1 --metrics_port=0 --metrics_bind=127.0.0.1 --log_every=5 \
    > "$TMP/worker.log" 2>&1 &
  PIDS+=($!)
  M=$(port_from "$TMP/worker.log" "metrics on port") || fail "worker printed no metrics port"
  TARGETS+=("worker=$M")
else
  echo "note: no worker binary: scraping without it"
fi

PROM_PORT=$(free_port)
{
  echo "global:"
  echo "  scrape_interval: 1s"
  echo "  scrape_timeout: 1s"
  echo "scrape_configs:"
  for t in "${TARGETS[@]}"; do
    echo "  - job_name: '${t%%=*}'"
    echo "    static_configs:"
    echo "      - targets: ['127.0.0.1:${t#*=}']"
  done
} > "$TMP/prometheus.yml"
"$PROMETHEUS" --config.file="$TMP/prometheus.yml" --storage.tsdb.path="$TMP/tsdb" \
  --web.listen-address=127.0.0.1:$PROM_PORT > "$TMP/prometheus.log" 2>&1 &
PIDS+=($!)
API=http://127.0.0.1:$PROM_PORT/api/v1
query() {  # promql -> JSON
  curl -s --max-time 5 -G "$API/query" --data-urlencode "query=$1"
}
# Number of series in a query result (and their values) via python3.
count_series() {
  python3 -c 'import json,sys
d=json.load(sys.stdin)
assert d["status"]=="success", d
print(len(d["data"]["result"]))'
}

N=${#TARGETS[@]}
echo "targets: ${TARGETS[*]}; prometheus on $PROM_PORT"
ok=0
for _ in $(seq 1 90); do
  up=$(query 'up == 1' 2>/dev/null | count_series 2>/dev/null)
  if [ "${up:-0}" = "$N" ]; then ok=1; break; fi
  sleep 1
done
[ $ok = 1 ] || { query up; echo; fail "not every target is up (want $N)"; }
echo "up == 1 for all $N targets"

# A few metric names per service are queryable through Prometheus.
want=(paragan_ps_table_version paragan_process_resident_memory_bytes)
for t in "${TARGETS[@]}"; do
  name=${t%%=*}; port=${t#*=}
  curl -s --max-time 5 "http://127.0.0.1:$port/metrics" > "$TMP/$name.metrics" \
    || fail "cannot fetch $name /metrics"
  if [ "$name" != shard ]; then
    first=$(grep -o '^paragan_[a-z0-9_]*' "$TMP/$name.metrics" | head -1)
    [ -n "$first" ] || fail "$name exposes no paragan_* metric"
    want+=("$first")
  fi
done
for m in "${want[@]}"; do
  n=0
  for _ in $(seq 1 10); do
    n=$(query "$m" | count_series)
    [ "${n:-0}" -ge 1 ] && break
    sleep 1
  done
  [ "${n:-0}" -ge 1 ] || fail "metric $m not queryable through Prometheus"
  echo "queryable: $m ($n series)"
done

if [ -x "$PROMTOOL" ]; then
  for t in "${TARGETS[@]}"; do
    name=${t%%=*}
    if "$PROMTOOL" check metrics < "$TMP/$name.metrics" > "$TMP/$name.promtool" 2>&1; then
      echo "promtool check metrics: $name ok"
    else
      cat "$TMP/$name.promtool"
      fail "promtool check metrics failed for $name"
    fi
  done
else
  echo "note: no promtool: skipping the lint"
fi
echo PASS

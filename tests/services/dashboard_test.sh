#!/usr/bin/env bash
# The Grafana dashboard (deploy/monitoring/paragan-dashboard.json) against a real run: a
# decoupled paragan_local run with the live evaluator (2 shards, the data
# service with the congestion-aware policy, a G and a D worker, paragan_eval), scraped by a real Prometheus
# from the prometheus.yml and prometheus_targets.json the launcher writes.
# Checks that every target carries the labels the dashboard selects on
# (job, namespace, paragan_job, process) and that every query of every
# panel, with the dashboard's variables set as Grafana would ("All"),
# returns data. Also checks the dashboard's structure (unique panel ids,
# one datasource variable, every query filtered by namespace and job).
#   args: paragan-dashboard.json paragan_local paragan_server paragan_data paragan_worker paragan_sample paragan_init paragan_eval
set -uo pipefail
PROMETHEUS=${PROMETHEUS:-/usr/bin/prometheus}
if [ ! -x "$PROMETHEUS" ]; then
  echo "SKIP: $PROMETHEUS is missing (Debian package 'prometheus', installed by deploy/setup.sh)"
  exit 0
fi
command -v curl >/dev/null || { echo "SKIP: curl is missing"; exit 0; }
DASH=$1; LOCAL=$2
MAKE_DASHBOARD=$(dirname "$DASH")/make_dashboard.py
source "$(dirname "$0")/bin_dir.sh"
BIN=$(make_bin_dir "${@:3:6}")
FMNIST=${PARAGAN_FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
if [ ! -f "$FMNIST/train-images-idx3-ubyte.gz" ]; then
  echo "SKIP: no Fashion-MNIST at $FMNIST (the live evaluator's reference needs it)"
  exit 0
fi
T=${TEST_TMPDIR:-$(mktemp -d)}/dash
rm -rf "$T"; mkdir -p "$T" "$T/ref"
OUT=$T/fm-dash
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  for f in "$OUT.stdout" "$OUT"/prometheus_targets.json "$T"/prometheus.log; do
    [ -f "$f" ] && { echo "== $f"; tail -25 "$f"; }
  done
  exit 1
}

# The committed JSON is what make_dashboard.py writes (edits go there).
python3 "$MAKE_DASHBOARD" "$T/regenerated.json" > /dev/null || fail "make_dashboard.py"
cmp -s "$DASH" "$T/regenerated.json" ||
  fail "paragan-dashboard.json is not make_dashboard.py's output: rerun python3 deploy/monitoring/make_dashboard.py"

# Structure, and the list of queries (one per line, variables as "All").
python3 - "$DASH" > "$T/queries.txt" <<'PY' || fail "dashboard structure"
import json, sys
d = json.load(open(sys.argv[1]))
assert d.get("uid"), "no uid"
ids = [p["id"] for p in d["panels"]]
assert len(ids) == len(set(ids)), "duplicate panel ids"
var = {v["name"]: v for v in d["templating"]["list"]}
assert var["datasource"]["type"] == "datasource", "no datasource variable"
assert {"namespace", "job"} <= set(var), "namespace/job variables missing"
n = 0
for p in d["panels"]:
    if p["type"] == "row":
        continue
    assert p["datasource"]["uid"] == "${datasource}", p["title"]
    assert p.get("targets"), "panel without queries: " + p["title"]
    for t in p["targets"]:
        e = t["expr"]
        assert 'namespace=~"$namespace"' in e and 'paragan_job=~"$job"' in e, \
            "query not filtered by namespace and job: " + e
        # Grafana's "All" is ".*"; $__rate_interval is at least 4 scrapes.
        e = e.replace("$namespace", ".*").replace("$job", ".*")
        e = e.replace("$__rate_interval", "15s")
        assert "$" not in e.replace("$labels", ""), "unknown variable: " + e
        print(p["title"] + "\t" + e)
        n += 1
print("%d queries" % n, file=sys.stderr)
PY
echo "dashboard: $(wc -l < "$T/queries.txt") queries"

"$LOCAL" --bin_dir="$BIN" --dataset=fashion_mnist --data_dir="$FMNIST" \
  --schedule=decoupled --g_workers=1 --d_workers=1 --num_shards=2 \
  --batch_size=16 --threads_per_worker=1 --minutes=3 --steps=0 --progress_s=10 \
  --num_samples=64 --out_dir="$OUT" --eval_every_s=8 --eval_samples=200 \
  --eval_final_samples=200 --eval_reference="$T/ref/fmnist-cnn.pgt" \
  --eval_flags="--reference_images=2000 --priority=normal --kid_subsets=10" \
  --data_flags=--dispatch_policy=congestion_aware > "$OUT.stdout" 2>&1 &
LOCAL_PID=$!
PIDS+=($LOCAL_PID)
for _ in $(seq 1 300); do
  [ -s "$OUT/prometheus.yml" ] && break
  kill -0 $LOCAL_PID 2>/dev/null || fail "paragan_local exited before writing prometheus.yml"
  sleep 0.5
done
[ -s "$OUT/prometheus.yml" ] || fail "no $OUT/prometheus.yml"
# As the launcher wrote it, at a test's pace: scrape each second.
sed 's/: 5s$/: 1s/' "$OUT/prometheus.yml" > "$OUT/prometheus-1s.yml"
grep -q 'files: \["prometheus_targets.json"\]' "$OUT/prometheus-1s.yml" || fail "prometheus.yml does not read the targets file"
PROM_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$PROMETHEUS" --config.file="$OUT/prometheus-1s.yml" --storage.tsdb.path="$T/tsdb" \
  --web.listen-address=127.0.0.1:$PROM_PORT > "$T/prometheus.log" 2>&1 &
PIDS+=($!)
API=http://127.0.0.1:$PROM_PORT/api/v1
query() { curl -s --max-time 5 -G "$API/query" --data-urlencode "query=$1"; }
count_series() {
  python3 -c 'import json,sys
d=json.load(sys.stdin)
assert d["status"]=="success", d
print(len(d["data"]["result"]))'
}

# Every service is found, with the labels the dashboard and alerts use.
want_up() {  # selector count
  for _ in $(seq 1 240); do
    n=$(query "up{$1} == 1" 2>/dev/null | count_series 2>/dev/null)
    [ "${n:-0}" = "$2" ] && return 0
    kill -0 $LOCAL_PID 2>/dev/null || fail "paragan_local exited while waiting for up{$1}"
    sleep 1
  done
  query "up"; echo
  fail "want $2 targets up{$1}, have ${n:-0}"
}
L='namespace="local",paragan_job="fm-dash"'
want_up "job=\"paragan-ps\",$L" 2
want_up "job=\"paragan-data\",$L,process=\"data\"" 1
want_up "job=\"paragan-worker\",$L,process=~\"g0|d0\"" 2
want_up "job=\"paragan-eval\",$L,process=\"eval\"" 1
echo "ok: 6 targets up with job, namespace, paragan_job and process labels"

# Every panel's every query has data while the run trains (rates need a
# window of samples; FID needs a round of the evaluator).
missing=()
deadline=$((SECONDS + 120))
while IFS=$'\t' read -r title expr; do
  n=0
  while :; do
    n=$(query "$expr" 2>/dev/null | count_series 2>/dev/null)
    [ "${n:-0}" -gt 0 ] && break
    if [ $SECONDS -ge $deadline ] || ! kill -0 $LOCAL_PID 2>/dev/null; then break; fi
    sleep 2
  done
  if [ "${n:-0}" -gt 0 ]; then
    echo "ok: $title: $n series from $expr"
  else
    echo "EMPTY: $title: $expr"
    query "$expr"; echo
    missing+=("$title")
  fi
done < "$T/queries.txt"
[ ${#missing[@]} = 0 ] || fail "panels without data: ${missing[*]}"
kill -INT $LOCAL_PID
wait $LOCAL_PID || fail "paragan_local did not stop cleanly after SIGINT"
grep -q "$OUT/prometheus.yml" "$OUT/summary.txt" || fail "prometheus.yml not among the outputs"
echo PASS

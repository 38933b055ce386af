#!/usr/bin/env bash
# Real processes: paragan_local with 2 shards, the data service and 2 workers
# for about a minute on the synthetic dataset (small batch), then checks the
# outputs exist and the summary's numbers are sane. A second short run kills
# one worker mid-run: the other goes on, the run still ends ok and reports
# the dead worker; a third kills a shard: the run stops with a clear error.
# First, a staleness policy the shards do not know: the run fails before any
# worker starts and shows the shard's own error line. The launcher runs
# paragan_init (the shards' initial networks) and paragan_sample --ps (the
# outputs, from the shards) as child processes, and reads the progress from
# the shards' GetState and the workers' /metrics.
#   args: paragan_local paragan_server paragan_data paragan_worker paragan_sample paragan_init
set -euo pipefail
LOCAL=$1; SERVER=$2; DATA=$3; WORKER=$4; SAMPLE=$5; INIT=$6
source "$(dirname "$0")/bin_dir.sh"
BIN=$(make_bin_dir "$SERVER" "$DATA" "$WORKER" "$INIT" "$SAMPLE")
# Workers built without a data-service client read the dataset themselves.
WORKER_DATA=${SERVICES_TEST_WORKER_DATA:-service}
if grep -q "no data service client yet" "$(readlink -f "$WORKER")"; then
  echo "note: this paragan_worker has no data-service client: --worker_data=local"
  WORKER_DATA=local
fi
SERVICES_TEST_FLAGS="--worker_data=$WORKER_DATA ${SERVICES_TEST_FLAGS:-}"
OUT=${TEST_TMPDIR:-$(mktemp -d)}/run
SECONDS_BUDGET=${SERVICES_TEST_SECONDS:-60}
MINUTES=$(awk "BEGIN{print $SECONDS_BUDGET/60}")
fail() { echo "FAIL: $*"; for f in "$OUT"/summary.txt "$OUT"/logs/*.log; do [ -f "$f" ] && { echo "== $f"; tail -20 "$f"; }; done; exit 1; }

# Wrong staleness policy: the launcher no longer knows the names; the
# shards refuse it and the user reads their line, before any worker starts.
OUT0=${TEST_TMPDIR:-$(mktemp -d)}/run_bad_policy
if "$LOCAL" --bin_dir="$BIN" --dataset=synthetic --data_dir= --batch_size=8 \
  --minutes=1 --steps=0 --staleness_policy=bogus --out_dir="$OUT0" $SERVICES_TEST_FLAGS \
  > "$OUT0.stdout" 2>&1; then
  OUT=$OUT0; cat "$OUT0.stdout"; fail "the run started with --staleness_policy=bogus"
fi
grep -q "^paragan_local: ERROR: shard[0-9] exited during startup (exit [0-9]*); its last stderr lines: .*unknown staleness policy 'bogus' (accept | " "$OUT0.stdout" \
  || { OUT=$OUT0; cat "$OUT0.stdout"; fail "no clear error for an unknown staleness policy"; }
[ ! -e "$OUT0/logs/w0.log" ] || { OUT=$OUT0; fail "a worker started despite the unknown policy"; }
grep -q '"ok": false' "$OUT0/summary.json" || { OUT=$OUT0; fail "summary of the bad-policy run says ok"; }
echo "ok: unknown staleness policy refused by the shards before any worker started"

"$LOCAL" --bin_dir="$BIN" --dataset=synthetic --data_dir= --batch_size=8 \
  --minutes="$MINUTES" --steps=0 --progress_s=5 --log_every=5 --num_samples=64 \
  --threads_per_worker=1 --out_dir="$OUT" $SERVICES_TEST_FLAGS \
  > "$OUT.stdout" 2>&1 || { cat "$OUT.stdout"; fail "paragan_local exited"; }
cat "$OUT.stdout"
# The progress line as README.md shows it, with both workers' rates (read
# from their /metrics) once they report.
grep -Eq '^\[ *[0-9]+m[0-9]{2}s\] G step [0-9]+ \| D/G versions [0-9]+/[0-9]+ \| [0-9]+ img/s total \(w0 [0-9]+, w1 [0-9]+\) \| losses D [-0-9.]+ G [-0-9.]+ \| staleness D [0-9.]+ G [0-9.]+ \| rejected [0-9]+$' \
  "$OUT.stdout" || fail "no progress line in README.md's format"

for f in summary.txt summary.json samples.npy samples.png checkpoint.pgt \
         ps/init.pgt ps/shard-0-of-2.pgt ps/shard-1-of-2.pgt logs/w0.log \
         logs/shard0.log logs/init.log logs/export.log; do
  [ -s "$OUT/$f" ] || fail "missing $OUT/$f"
done
ls "$OUT"/grid_*.png >/dev/null || fail "no grid png"
J="$OUT/summary.json"
num() { sed -n "s/^  \"$1\": \([-0-9.e+]*\),*$/\1/p" "$J"; }
grep -q '"ok": true' "$J" || fail "summary says not ok"
G=$(num g_steps); D=$(num d_steps); IMG=$(num images_per_s); W=$(num num_workers)
echo "g_steps=$G d_steps=$D images_per_s=$IMG"
[ "$W" = 2 ] || fail "num_workers $W"
[ "$G" -ge 5 ] || fail "only $G G steps in ${SECONDS_BUDGET}s"
# One D push before each G push; a D push the staleness policy refused
# (a loaded machine) steps nothing.
R=$(num rejected_pushes)
[ $((D + R)) -ge "$G" ] || fail "D steps $D + rejected pushes $R < G steps $G"
awk "BEGIN{exit !($IMG > 0 && $IMG < 100000)}" || fail "images/s $IMG"
# What the monitor read from the workers' metrics: their steps, rates and
# the D logits (a gauge added for it).
WS=$(num worker_steps); DR=$(num d_real)
[ "$WS" -ge 5 ] || fail "worker_steps $WS"
awk "BEGIN{exit !($DR != 0)}" || fail "d_real $DR: the workers' logit gauges were not read"
grep -Eq '"worker_images_per_s": \{"w0": [0-9.e+]+, "w1": [0-9.e+]+\}' "$J" \
  || fail "no per-worker images/s in summary.json"
for p in init shard0 shard1 data w0 w1 export; do
  grep -q "{\"name\": \"$p\", \"pid\": [0-9]*, \"exit\": \"exit 0\", \"ok\": true}" "$J" \
    || fail "process $p did not exit 0"
done
# The summary lists the files paragan_sample --ps reported writing.
for f in samples.npy samples.png checkpoint.pgt; do
  grep -q "\"$OUT/$f\"" "$J" || fail "summary.json does not list $f"
done
grep -q "^wrote $OUT/grid_[0-9]*\.png$" "$OUT/logs/export.log" || fail "export.log has no grid"
# The combined checkpoint loads in paragan_sample.
"$SAMPLE" --checkpoint="$OUT/checkpoint.pgt" --num_samples=8 --out="$OUT/resampled" \
  || fail "paragan_sample cannot load checkpoint.pgt"
[ -s "$OUT/resampled.npy" ] || fail "paragan_sample wrote nothing"

# Dead worker: w1 is killed after 10 s of training; w0 goes on.
OUT2=${TEST_TMPDIR:-$(mktemp -d)}/run_kill
"$LOCAL" --bin_dir="$BIN" --dataset=synthetic --data_dir= --batch_size=8 \
  --minutes=0.5 --steps=0 --progress_s=5 --log_every=5 --num_samples=16 \
  --kill_process=w1 --kill_after_s=10 --out_dir="$OUT2" $SERVICES_TEST_FLAGS \
  > "$OUT2.stdout" 2>&1 || { OUT=$OUT2; cat "$OUT2.stdout"; fail "run with a killed worker failed"; }
grep -q 'w1 (pid [0-9]*) died unexpectedly: killed by signal 9' "$OUT2.stdout" \
  || { cat "$OUT2.stdout"; fail "no loud report of the dead worker"; }
grep -q '"name": "w1", "pid": [0-9]*, "exit": "killed by signal 9' "$OUT2/summary.json" \
  || fail "summary lacks w1's exit"
grep -q '"name": "w0", "pid": [0-9]*, "exit": "exit 0", "ok": true' "$OUT2/summary.json" \
  || fail "w0 did not go on and exit 0"
[ -s "$OUT2/samples.npy" ] || fail "no samples after a dead worker"

# Dead shard: shard1 is killed after 5 s of training; the run stops with a
# clear error (exit 1), stops the others cleanly and still writes a summary.
OUT3=${TEST_TMPDIR:-$(mktemp -d)}/run_kill_shard
if "$LOCAL" --bin_dir="$BIN" --dataset=synthetic --data_dir= --batch_size=8 \
  --minutes=1 --steps=0 --progress_s=5 --log_every=5 --num_samples=16 \
  --kill_process=shard1 --kill_after_s=5 --out_dir="$OUT3" $SERVICES_TEST_FLAGS \
  > "$OUT3.stdout" 2>&1; then
  cat "$OUT3.stdout"; fail "the run went on without shard1"
fi
grep -q 'ERROR: parameter-server shard1 died (killed by signal 9' "$OUT3.stdout" \
  || { cat "$OUT3.stdout"; fail "no clear error for the dead shard"; }
grep -q '"ok": false' "$OUT3/summary.json" || fail "summary of the dead-shard run says ok"
for p in shard0 data w0 w1; do
  grep -q "{\"name\": \"$p\", \"pid\": [0-9]*, \"exit\": \"exit 0\", \"ok\": true}" "$OUT3/summary.json" \
    || fail "$p was not stopped cleanly after the shard died"
done
echo PASS

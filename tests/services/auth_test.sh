#!/usr/bin/env bash
# Real processes with authentication on: paragan_local --auth writes a fresh
# token (mode 0600) and hands it to every shard, the data service, the
# workers and the export; the run trains and writes its outputs through
# them. Then a shard and the data service started with that token refuse a
# client without it (UNAUTHENTICATED, a log line) and serve one with it.
#   args: paragan_local paragan_server paragan_data paragan_worker
#         paragan_sample paragan_init paragan_data_fetch
set -euo pipefail
LOCAL=$1; SERVER=$2; DATA=$3; WORKER=$4; SAMPLE=$5; INIT=$6; FETCH=$7
BIN=$(mktemp -d)
mkdir -p "$BIN/server" "$BIN/dataloader" "$BIN/worker/distributed" "$BIN/worker/train"
ln -s "$(readlink -f "$SERVER")" "$BIN/server/paragan_server"
ln -s "$(readlink -f "$DATA")" "$BIN/dataloader/paragan_data"
ln -s "$(readlink -f "$WORKER")" "$BIN/worker/distributed/paragan_worker"
ln -s "$(readlink -f "$INIT")" "$BIN/worker/train/paragan_init"
ln -s "$(readlink -f "$SAMPLE")" "$BIN/worker/train/paragan_sample"
T=${TEST_TMPDIR:-$(mktemp -d)}
OUT=$T/run
fail() { echo "FAIL: $*"; for f in "$OUT"/logs/*.log "$T"/*.txt; do [ -f "$f" ] && { echo "== $f"; tail -20 "$f"; }; done; exit 1; }

"$LOCAL" --bin_dir="$BIN" --dataset=synthetic --data_dir= --batch_size=8 \
  --steps=20 --minutes=2 --progress_s=5 --log_every=5 --num_samples=16 \
  --auth --out_dir="$OUT" > "$T/run.txt" 2>&1 || { cat "$T/run.txt"; fail "paragan_local --auth exited"; }
TOKEN_FILE=$OUT/secrets/auth_token
[ -s "$TOKEN_FILE" ] || fail "no token file"
[ "$(stat -c %a "$TOKEN_FILE")" = 600 ] || fail "token file mode $(stat -c %a "$TOKEN_FILE")"
[ "$(stat -c %a "$OUT/secrets")" = 700 ] || fail "secrets dir mode"
grep -q '"ok": true' "$OUT/summary.json" || fail "summary says not ok"
grep -q "needs the bearer token" "$OUT/logs/shard0.log" || fail "shard0 did not require the token"
grep -q "needs the bearer token" "$OUT/logs/data.log" || fail "data service did not require the token"
[ -s "$OUT/samples.npy" ] && [ -s "$OUT/checkpoint.pgt" ] || fail "no outputs exported"
if grep -q "refused" "$OUT"/logs/*.log; then fail "a process of the run was refused"; fi
TOKEN=$(cat "$TOKEN_FILE")
grep -rq "$TOKEN" "$OUT/logs" "$OUT/summary.json" "$T/run.txt" && fail "the token is printed in a log"
echo "ok: the run trained and exported with the token on every service"

# A shard with the token: paragan_sample --ps without it is refused, with
# it reads the shard.
"$INIT" --model=dcgan32 --out="$T/init.pgt" > "$T/init.txt" 2>&1 || fail "paragan_init"
"$SERVER" --port=0 --bind_address=127.0.0.1 --init="$T/init.pgt" \
  --auth_token_file="$TOKEN_FILE" --port_file="$T/ps.port" > "$T/ps.txt" 2>&1 &
PS_PID=$!
"$DATA" --port=0 --bind_address=127.0.0.1 --dataset=synthetic --batch_size=8 \
  --auth_token_file="$TOKEN_FILE" > "$T/data.txt" 2>&1 &
DATA_PID=$!
trap 'kill $PS_PID $DATA_PID 2>/dev/null || true' EXIT
for _ in $(seq 300); do
  [ -s "$T/ps.port" ] && grep -q "listening on port" "$T/data.txt" && break
  sleep 0.1
done
PS="127.0.0.1:$(cat "$T/ps.port")"
DATA_ADDR="127.0.0.1:$(sed -n 's/.*listening on port \([0-9]*\).*/\1/p' "$T/data.txt")"
mkdir -p "$T/x"
if "$SAMPLE" --ps="$PS" --out_dir="$T/x" --num_samples=4 > "$T/sample_no_token.txt" 2>&1; then
  fail "paragan_sample read a shard without the token"
fi
grep -Eq "UNAUTHENTICATED|requires a bearer token" "$T/sample_no_token.txt" || fail "no UNAUTHENTICATED error for paragan_sample"
grep -q "refused .* from .*no bearer token" "$T/ps.txt" || fail "the shard logged no refusal"
mkdir -p "$T/y"
"$SAMPLE" --ps="$PS" --out_dir="$T/y" --num_samples=4 --auth_token_file="$TOKEN_FILE" \
  > "$T/sample_token.txt" 2>&1 || fail "paragan_sample with the token failed"
if "$FETCH" --address="$DATA_ADDR" --seconds=1 --max_retry_seconds=1 > "$T/fetch_no_token.txt" 2>&1; then
  fail "a data client without the token fetched batches"
fi
grep -Eq "UNAUTHENTICATED|requires a bearer token" "$T/fetch_no_token.txt" || fail "no UNAUTHENTICATED error for the data client"
"$FETCH" --address="$DATA_ADDR" --seconds=1 --auth_token_file="$TOKEN_FILE" \
  > "$T/fetch_token.txt" 2>&1 || fail "the data client with the token failed"
echo "ok: strangers refused by the shard and the data service, the token holder served"
echo PASS

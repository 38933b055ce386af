#!/usr/bin/env bash
# Real processes with authentication and mutual TLS on: paragan_local --auth
# --tls writes a fresh token (mode 0600) and a throwaway CA with server and
# client certificates, and hands them to every shard, the data service, the
# workers and the export; the run trains and writes its outputs through them,
# with no shard data plane. Then a shard and the data service started with
# that token and certificates made by deploy/tls/make_certs.sh refuse every
# client lacking one of them (plaintext, no client certificate, no token:
# UNAUTHENTICATED and a log line) and serve one with all; the shard listens
# on its gRPC port only; bad TLS flags stop a server with an error naming
# them. paragan_health, with the flags of deploy/k8s/components/secure's
# exec probes, finds both SERVING over mutual TLS, and cannot ask without
# the client certificate.
#   args: paragan_local paragan_server paragan_data paragan_worker
#         paragan_sample paragan_init paragan_data_fetch make_certs.sh
#         paragan_health
set -euo pipefail
LOCAL=$1; SERVER=$2; DATA=$3; WORKER=$4; SAMPLE=$5; INIT=$6; FETCH=$7; MAKE_CERTS=$8
HEALTH=$9
source "$(dirname "$0")/bin_dir.sh"
BIN=$(make_bin_dir "$SERVER" "$DATA" "$WORKER" "$INIT" "$SAMPLE")
T=${TEST_TMPDIR:-$(mktemp -d)}
OUT=$T/run
fail() { echo "FAIL: $*"; for f in "$OUT"/logs/*.log "$T"/*.txt; do [ -f "$f" ] && { echo "== $f"; tail -20 "$f"; }; done; exit 1; }

"$LOCAL" --bin_dir="$BIN" --dataset=synthetic --data_dir= --batch_size=8 \
  --steps=20 --minutes=2 --progress_s=5 --log_every=5 --num_samples=16 \
  --auth --tls --out_dir="$OUT" > "$T/run.txt" 2>&1 || { cat "$T/run.txt"; fail "paragan_local --auth --tls exited"; }
TOKEN_FILE=$OUT/secrets/auth_token
[ -s "$TOKEN_FILE" ] || fail "no token file"
[ "$(stat -c %a "$TOKEN_FILE")" = 600 ] || fail "token file mode $(stat -c %a "$TOKEN_FILE")"
[ "$(stat -c %a "$OUT/secrets")" = 700 ] || fail "secrets dir mode"
grep -q '"ok": true' "$OUT/summary.json" || fail "summary says not ok"
grep -q "needs the bearer token" "$OUT/logs/shard0.log" || fail "shard0 did not require the token"
grep -q "needs the bearer token" "$OUT/logs/data.log" || fail "data service did not require the token"
for f in shard0 shard1 data; do
  grep -q "TLS with client certificates on" "$OUT/logs/$f.log" || fail "$f did not serve mutual TLS"
done
if grep -q "data plane on port" "$OUT"/logs/shard*.log; then fail "a shard opened a plaintext data plane under TLS"; fi
grep -q "TLS on: tensors over gRPC/TLS" "$OUT/logs/w0.log" || fail "worker w0 did not use TLS"
[ "$(stat -c %a "$OUT/secrets/tls/server.key")" = 600 ] || fail "server key mode"
[ -s "$OUT/samples.npy" ] && [ -s "$OUT/checkpoint.pgt" ] || fail "no outputs exported"
if grep -q "refused" "$OUT"/logs/*.log; then fail "a process of the run was refused"; fi
TOKEN=$(cat "$TOKEN_FILE")
grep -rq "$TOKEN" "$OUT/logs" "$OUT/summary.json" "$T/run.txt" && fail "the token is printed in a log"
echo "ok: the run trained and exported with the token and mutual TLS on every service"

# A shard and a data service with the token and mutual TLS.
CERTS=$T/certs
bash "$MAKE_CERTS" "$CERTS" > "$T/certs.txt" 2>&1 || { cat "$T/certs.txt"; fail "make_certs.sh"; }
[ "$(stat -c %a "$CERTS/server.key")" = 600 ] || fail "make_certs.sh key mode"
SERVE_TLS=(--tls_cert_file="$CERTS/server.pem" --tls_key_file="$CERTS/server.key" --tls_ca_file="$CERTS/ca.pem")
CLIENT_TLS=(--tls_cert_file="$CERTS/client.pem" --tls_key_file="$CERTS/client.key" --tls_ca_file="$CERTS/ca.pem")
"$INIT" --model=dcgan32 --out="$T/init.pgt" > "$T/init.txt" 2>&1 || fail "paragan_init"

# Bad TLS flags stop a server at once, naming what is wrong.
if "$SERVER" --port=0 --bind_address=127.0.0.1 --init="$T/init.pgt" --metrics_port=-1 \
    --tls_cert_file="$CERTS/server.pem" --tls_key_file="$CERTS/client.key" > "$T/bad_key.txt" 2>&1; then
  fail "a shard started with another certificate's key"
fi
grep -q "tls_key_file .* is not the key of the certificate" "$T/bad_key.txt" || fail "no clear error for a wrong key: $(cat "$T/bad_key.txt")"
if "$SERVER" --port=0 --bind_address=127.0.0.1 --init="$T/init.pgt" --metrics_port=-1 \
    "${SERVE_TLS[@]}" --data_plane_port=45678 > "$T/bad_dp.txt" 2>&1; then
  fail "a shard started a plaintext data plane under TLS"
fi
grep -q "data_plane_port has no TLS" "$T/bad_dp.txt" || fail "no clear error for --data_plane_port under TLS"

"$SERVER" --port=0 --bind_address=127.0.0.1 --init="$T/init.pgt" --metrics_port=-1 \
  --auth_token_file="$TOKEN_FILE" "${SERVE_TLS[@]}" --port_file="$T/ps.port" > "$T/ps.txt" 2>&1 &
PS_PID=$!
"$DATA" --port=0 --bind_address=127.0.0.1 --dataset=synthetic --batch_size=8 \
  --auth_token_file="$TOKEN_FILE" "${SERVE_TLS[@]}" > "$T/data.txt" 2>&1 &
DATA_PID=$!
trap 'kill $PS_PID $DATA_PID 2>/dev/null || true' EXIT
for _ in $(seq 300); do
  [ -s "$T/ps.port" ] && grep -q "listening on port" "$T/data.txt" && break
  sleep 0.1
done
PS="127.0.0.1:$(cat "$T/ps.port")"
DATA_ADDR="127.0.0.1:$(sed -n 's/.*listening on port \([0-9]*\).*/\1/p' "$T/data.txt")"
# No plaintext path to tensors: the shard listens on its gRPC port only.
LISTENING=$(ss -ltnpH | grep -c "pid=$PS_PID," || true)
[ "$LISTENING" = 1 ] || { ss -ltnp | grep "pid=$PS_PID," || true; fail "the shard listens on $LISTENING ports under TLS, not 1"; }
mkdir -p "$T/x"
if "$SAMPLE" --ps="$PS" --out_dir="$T/x" --num_samples=4 --auth_token_file="$TOKEN_FILE" \
    > "$T/sample_plaintext.txt" 2>&1; then
  fail "paragan_sample read a TLS shard over plaintext"
fi
grep -q "the server may require TLS: give --tls_ca_file" "$T/sample_plaintext.txt" || fail "no TLS hint: $(cat "$T/sample_plaintext.txt")"
if "$SAMPLE" --ps="$PS" --out_dir="$T/x" --num_samples=4 --auth_token_file="$TOKEN_FILE" \
    --tls_ca_file="$CERTS/ca.pem" > "$T/sample_no_cert.txt" 2>&1; then
  fail "paragan_sample without a client certificate got through mutual TLS"
fi
grep -q "may require a client certificate" "$T/sample_no_cert.txt" || fail "no client-certificate hint: $(cat "$T/sample_no_cert.txt")"
if "$SAMPLE" --ps="$PS" --out_dir="$T/x" --num_samples=4 "${CLIENT_TLS[@]}" > "$T/sample_no_token.txt" 2>&1; then
  fail "paragan_sample read a shard without the token"
fi
grep -Eq "UNAUTHENTICATED|requires a bearer token" "$T/sample_no_token.txt" || fail "no UNAUTHENTICATED error for paragan_sample"
grep -q "refused .* from .*no bearer token" "$T/ps.txt" || fail "the shard logged no refusal"
mkdir -p "$T/y"
"$SAMPLE" --ps="$PS" --out_dir="$T/y" --num_samples=4 --auth_token_file="$TOKEN_FILE" \
  "${CLIENT_TLS[@]}" > "$T/sample_token.txt" 2>&1 || fail "paragan_sample with the token and certificate failed"
if "$FETCH" --address="$DATA_ADDR" --seconds=1 --max_retry_seconds=1 --auth_token_file="$TOKEN_FILE" \
    > "$T/fetch_plaintext.txt" 2>&1; then
  fail "a plaintext data client fetched batches from a TLS data service"
fi
if "$FETCH" --address="$DATA_ADDR" --seconds=1 --max_retry_seconds=1 "${CLIENT_TLS[@]}" \
    > "$T/fetch_no_token.txt" 2>&1; then
  fail "a data client without the token fetched batches"
fi
grep -Eq "UNAUTHENTICATED|requires a bearer token" "$T/fetch_no_token.txt" || fail "no UNAUTHENTICATED error for the data client"
"$FETCH" --address="$DATA_ADDR" --seconds=1 --auth_token_file="$TOKEN_FILE" "${CLIENT_TLS[@]}" \
  > "$T/fetch_token.txt" 2>&1 || fail "the data client with the token and certificate failed"
echo "ok: plaintext, certificate-less and token-less clients refused by the shard and the data service, the holder of both served"
# The secure overlay's probes: 127.0.0.1 with the server name localhost.
PROBE=(--timeout_s=5 --auth_token_file="$TOKEN_FILE" "${CLIENT_TLS[@]}" --tls_server_name=localhost)
"$HEALTH" --address="127.0.0.1:${PS##*:}" --service=paragan.v1.ParameterServer "${PROBE[@]}" \
  > "$T/health_ps.txt" 2>&1 || fail "paragan_health (the probe's flags) on the TLS shard: exit $?"
"$HEALTH" --address="127.0.0.1:${DATA_ADDR##*:}" --service=paragan.v1.DataService "${PROBE[@]}" \
  > "$T/health_data.txt" 2>&1 || fail "paragan_health (the probe's flags) on the TLS data service: exit $?"
set +e
"$HEALTH" --address="$PS" --service=paragan.v1.ParameterServer --timeout_s=2 \
  --tls_ca_file="$CERTS/ca.pem" --tls_server_name=localhost > "$T/health_no_cert.txt" 2>&1
rc=$?
set -e
[ $rc = 2 ] || fail "paragan_health without a client certificate: exit $rc, want 2 (cannot ask)"
echo "ok: paragan_health with the secure overlay's probe flags finds the shard and the data service SERVING; without a client certificate it cannot ask"
echo PASS

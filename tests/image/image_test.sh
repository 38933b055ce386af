#!/usr/bin/env bash
# The image's root filesystem runs the services with nothing else: build
# deploy/image/build_image.sh's rootfs from the built binaries, then inside
# a chroot of it, as the image's non-root user, write an init file, serve a
# shard, ask its grpc.health.v1 (SERVING), stop it with SIGTERM (the
# checkpoint is written, exit 0), and have every binary print its flags (all
# its libraries load). Between: the data service and a worker from the
# image train 20 steps, and paragan_sample writes samples from the shard.
# Then, with podman (deploy/setup.sh installs it), the image itself: built
# by build_image.sh, and a shard, the data service, a worker and
# paragan_sample run from it as containers (host network, loopback, user
# 65532, read-only root) train and write samples; `podman stop` (SIGTERM)
# makes the shard write its checkpoint. Podman's configuration and storage
# live in the test's directory. Skips without root (chroot needs it).
#   args: build_image.sh Containerfile paragan_server paragan_data paragan_worker paragan_init paragan_sample paragan_export paragan_eval paragan_health
set -uo pipefail
[ "$(id -u)" = 0 ] || { echo "SKIP: chroot needs root"; exit 0; }
# Tests run with a short PATH: chroot lives in /usr/sbin.
CHROOT=$(PATH=$PATH:/usr/sbin:/sbin command -v chroot) || { echo "SKIP: no chroot"; exit 0; }
BUILD=$1; shift 2
source "$(dirname "$0")/../services/bin_dir.sh"
BIN=$(make_bin_dir "$@")
T=${TEST_TMPDIR:-$(mktemp -d)}/image
rm -rf "$T"; mkdir -p "$T"
R=$T/rootfs
fail() { echo "FAIL: $*"; for f in "$R"/tmp/*.log; do [ -f "$f" ] && { echo "== $f"; tail -20 "$f"; }; done; exit 1; }
# Podman (when installed) keeps its configuration and storage in the test's
# directory: this sandbox needs explicit ulimits, runc and cgroupfs, and vfs
# storage works on any file system. Nothing outside $P is touched.
export PATH=$PATH:/usr/sbin:/sbin  # runc
PODMAN=0
command -v podman > /dev/null && command -v runc > /dev/null && PODMAN=1
P=$T/podman
mkdir -p "$P/state" "$P/run"
printf '%s\n' '[containers]' 'default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]' \
  '[engine]' 'runtime = "runc"' 'cgroup_manager = "cgroupfs"' > "$P/containers.conf"
printf '%s\n' '[storage]' 'driver = "vfs"' "graphroot = \"$P/storage\"" "runroot = \"$P/run\"" \
  > "$P/storage.conf"
export CONTAINERS_CONF=$P/containers.conf CONTAINERS_STORAGE_CONF=$P/storage.conf
IMAGE=localhost/paragan:image-test
PID="" DPID=""
CONTAINERS=()
cleanup() {
  [ -n "$PID$DPID" ] && kill -9 $PID $DPID 2>/dev/null
  if [ $PODMAN = 1 ]; then
    [ ${#CONTAINERS[@]} -gt 0 ] && podman rm -f "${CONTAINERS[@]}" > /dev/null 2>&1
    podman rmi -f "$IMAGE" > /dev/null 2>&1
  fi
}
trap cleanup EXIT
bash "$BUILD" --bin_dir="$BIN" --rootfs="$R" --tag="$IMAGE" > "$T/build.log" 2>&1 ||
  { tail -20 "$T/build.log"; fail "build_image.sh"; }
[ -s "$R.tar" ] || fail "no $R.tar"
[ ! -e "$R/bin/sh" ] && [ ! -e "$R/usr/bin" ] || fail "the rootfs has a shell or /usr/bin"
as_user() { "$CHROOT" --userspec=65532:65532 "$R" "$@"; }
for b in "$R"/paragan/bin/*; do
  name=$(basename "$b")
  out=$(as_user "/paragan/bin/$name" --helpfull 2>&1)
  echo "$out" | grep -q -- "--helpfull" || { echo "$out" | head; fail "$name does not run in the rootfs"; }
done
echo "ok: every binary runs in the rootfs"
as_user /paragan/bin/paragan_init --model=dcgan32 --out=/state/init.pgt > "$R/tmp/init.log" 2>&1 || fail "paragan_init"
"$CHROOT" --userspec=65532:65532 "$R" /paragan/bin/paragan_server --bind_address=127.0.0.1 --port=0 \
  --port_file=/tmp/port --init=/state/init.pgt --checkpoint_dir=/state --metrics_port=-1 \
  > "$R/tmp/server.log" 2>&1 &
PID=$!
for _ in $(seq 1 100); do [ -s "$R/tmp/port" ] && break; sleep 0.1; done
PORT=$(cat "$R/tmp/port" 2>/dev/null) || fail "the shard wrote no port"
ok=0
for _ in $(seq 1 50); do
  if as_user /paragan/bin/paragan_health --address=127.0.0.1:$PORT > "$R/tmp/health.log" 2>&1; then ok=1; break; fi
  sleep 0.1
done
[ $ok = 1 ] || fail "paragan_health in the rootfs: $(cat "$R/tmp/health.log")"
echo "ok: a shard serves from the rootfs and answers its health check: $(cat "$R/tmp/health.log")"
# A short training job from the image: the data service and a worker beside
# the shard, then samples from the shards' G_ema.
as_user /paragan/bin/paragan_data --bind_address=127.0.0.1 --port=0 --dataset=synthetic \
  --batch_size=8 > "$R/tmp/data.log" 2>&1 &
DPID=$!
for _ in $(seq 1 100); do grep -qs "listening on port" "$R/tmp/data.log" && break; sleep 0.1; done
DPORT=$(sed -n 's/.*listening on port \([0-9]*\).*/\1/p' "$R/tmp/data.log" | head -1)
[ -n "$DPORT" ] || fail "the data service printed no port"
timeout 300 "$CHROOT" --userspec=65532:65532 "$R" /paragan/bin/paragan_worker --worker_id=w0 \
  --ps=127.0.0.1:$PORT --data=127.0.0.1:$DPORT --model=dcgan32 --batch_size=8 --threads=1 \
  --steps=20 --log_every=10 > "$R/tmp/worker.log" 2>&1 || fail "the worker did not train 20 steps"
as_user /paragan/bin/paragan_sample --ps=127.0.0.1:$PORT --model=dcgan32 --num_samples=16 \
  --batch_size=8 --threads=1 --out_dir=/state/samples > "$R/tmp/sample.log" 2>&1 || fail "paragan_sample"
ls "$R"/state/samples/*.npy > /dev/null 2>&1 || fail "no samples written: $(ls "$R/state/samples" 2>&1)"
echo "ok: trained 20 steps from the image and wrote $(cd "$R/state/samples" && ls | tr '\n' ' ')"
kill -TERM $DPID; wait $DPID 2>/dev/null
kill -TERM $PID
wait $PID || fail "the shard did not exit 0 on SIGTERM"
ls "$R"/state/shard-0-of-1*.pgt > /dev/null 2>&1 || fail "no checkpoint in /state after SIGTERM"
echo "ok: SIGTERM wrote $(cd "$R/state" && ls shard-0-of-1*.pgt)"

# The image, run by podman.
if [ $PODMAN = 0 ]; then
  echo "ok: podman or runc not installed (deploy/setup.sh installs them): the image was not built or run"
  echo PASS; exit 0
fi
pfail() {
  for c in "${CONTAINERS[@]}"; do echo "== podman logs $c"; podman logs "$c" 2>&1 | tail -20; done
  fail "$@"
}
grep -q "built $IMAGE" "$T/build.log" || { tail -5 "$T/build.log"; fail "build_image.sh built no image"; }
[ "$(podman image inspect --format '{{.Config.User}}' "$IMAGE")" = 65532:65532 ] ||
  fail "the image does not run as 65532"
chown 65532:65532 "$P/state"
RUN=(podman run --network host --read-only --user 65532:65532 -v "$P/state:/state")
"${RUN[@]}" --rm --entrypoint /paragan/bin/paragan_init "$IMAGE" --model=dcgan32 \
  --out=/state/init.pgt > "$P/init.log" 2>&1 || { cat "$P/init.log"; fail "paragan_init from the image"; }
# The image's entrypoint is the shard.
CONTAINERS+=(pg-image-shard)
"${RUN[@]}" -d --name pg-image-shard "$IMAGE" --bind_address=127.0.0.1 --port=0 \
  --port_file=/state/port --init=/state/init.pgt --checkpoint_dir=/state --metrics_port=-1 \
  > /dev/null || pfail "podman run of the shard"
for _ in $(seq 1 100); do [ -s "$P/state/port" ] && break; sleep 0.1; done
PORT=$(cat "$P/state/port" 2>/dev/null) || pfail "the shard's container wrote no port"
CONTAINERS+=(pg-image-data)
"${RUN[@]}" -d --name pg-image-data --entrypoint /paragan/bin/paragan_data "$IMAGE" \
  --bind_address=127.0.0.1 --port=0 --dataset=synthetic --batch_size=8 --metrics_port=-1 \
  > /dev/null || pfail "podman run of the data service"
DPORT=""
for _ in $(seq 1 100); do
  DPORT=$(podman logs pg-image-data 2>&1 | sed -n 's/.*listening on port \([0-9]*\).*/\1/p' | head -1)
  [ -n "$DPORT" ] && break
  sleep 0.1
done
[ -n "$DPORT" ] || pfail "the data service's container printed no port"
timeout 300 "${RUN[@]}" --rm --entrypoint /paragan/bin/paragan_worker "$IMAGE" --worker_id=w0 \
  --ps=127.0.0.1:$PORT --data=127.0.0.1:$DPORT --model=dcgan32 --batch_size=8 --threads=1 \
  --steps=20 --log_every=10 > "$P/worker.log" 2>&1 ||
  { tail "$P/worker.log"; pfail "the worker's container did not train 20 steps"; }
"${RUN[@]}" --rm --entrypoint /paragan/bin/paragan_sample "$IMAGE" --ps=127.0.0.1:$PORT \
  --model=dcgan32 --num_samples=16 --batch_size=8 --threads=1 --out_dir=/state/samples \
  > "$P/sample.log" 2>&1 || { cat "$P/sample.log"; pfail "paragan_sample from the image"; }
ls "$P"/state/samples/*.npy > /dev/null 2>&1 || pfail "no samples from the image's paragan_sample"
echo "ok: containers of the image trained 20 steps and wrote $(cd "$P/state/samples" && ls | tr '\n' ' ')"
podman stop -t 60 pg-image-shard > /dev/null || pfail "podman stop of the shard"
[ "$(podman inspect --format '{{.State.ExitCode}}' pg-image-shard)" = 0 ] ||
  pfail "the shard's container did not exit 0 on SIGTERM"
ls "$P"/state/shard-0-of-1*.pgt > /dev/null 2>&1 || pfail "no checkpoint from the shard's container after SIGTERM"
echo "ok: podman stop (SIGTERM): the shard's container exited 0 and wrote $(cd "$P/state" && ls shard-0-of-1*.pgt)"
echo PASS

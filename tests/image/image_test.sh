#!/usr/bin/env bash
# The image's root filesystem runs the services with nothing else: build
# deploy/image/build_image.sh's rootfs from the built binaries, then inside
# a chroot of it, as the image's non-root user, have every binary print its
# flags (all its libraries load), write an init file, serve a shard and ask
# its grpc.health.v1 (SERVING), train 20 steps with the data service and a
# worker, write samples with paragan_sample from the shard, and stop the
# shard with SIGTERM (the checkpoint is written, exit 0). Then, with podman
# (deploy/setup.sh installs it), the same job from the image itself, built
# by build_image.sh: every process a container (host network, loopback, user
# 65532, read-only root; the shard is the image's entrypoint), stopped by
# `podman stop`. Podman's configuration and storage live in the test's
# directory. Skips without root (chroot needs it).
#   args: build_image.sh Containerfile paragan_server paragan_data paragan_worker paragan_init paragan_sample paragan_export paragan_eval paragan_health
set -uo pipefail
[ "$(id -u)" = 0 ] || { echo "SKIP: chroot needs root"; exit 0; }
# Tests run with a short PATH: chroot and runc live in /usr/sbin.
export PATH=$PATH:/usr/sbin:/sbin
CHROOT=$(command -v chroot) || { echo "SKIP: no chroot"; exit 0; }
BUILD=$1; shift 2
source "$(dirname "$0")/../services/bin_dir.sh"
BIN=$(make_bin_dir "$@")
T=${TEST_TMPDIR:-$(mktemp -d)}/image
R=$T/rootfs
umount "$R/proc" 2> /dev/null  # a killed run's (below)
rm -rf --one-file-system "$T"; mkdir -p "$T"
# Podman (when installed) keeps its configuration and storage in the test's
# directory: this sandbox needs explicit ulimits, runc and cgroupfs, and vfs
# storage works on any file system. Nothing outside $P is touched.
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

# The two ways of running the image's binaries, MODE chroot or podman, as
# user 65532 with the host's /state at STATE:
#   start NAME BINARY ARGS...  in the background, its output NAME's log
#   run NAME BINARY ARGS...    in the foreground, output to $LOGS/NAME.log
#   log NAME                   what NAME printed
#   stop NAME                  SIGTERM; the exit status of NAME
declare -A PIDS=()
CONTAINERS=()
set_mode() {
  MODE=$1
  if [ "$MODE" = chroot ]; then STATE=$R/state LOGS=$R/tmp; else STATE=$P/state LOGS=$P; fi
}
start() {
  local name=$1 bin=$2; shift 2
  if [ "$MODE" = chroot ]; then
    "$CHROOT" --userspec=65532:65532 "$R" "/paragan/bin/$bin" "$@" > "$LOGS/$name.log" 2>&1 &
    PIDS[$name]=$!
  else
    local entry=(--entrypoint "/paragan/bin/$bin")
    [ "$bin" = paragan_server ] && entry=()  # the image's entrypoint
    CONTAINERS+=("pg-image-$name")
    podman run -d --name "pg-image-$name" --network host --read-only --user 65532:65532 \
      -v "$STATE:/state" "${entry[@]}" "$IMAGE" "$@" > /dev/null
  fi
}
run() {
  local name=$1 bin=$2; shift 2
  if [ "$MODE" = chroot ]; then
    timeout 300 "$CHROOT" --userspec=65532:65532 "$R" "/paragan/bin/$bin" "$@" > "$LOGS/$name.log" 2>&1
  else
    timeout 300 podman run --rm --network host --read-only --user 65532:65532 \
      -v "$STATE:/state" --entrypoint "/paragan/bin/$bin" "$IMAGE" "$@" > "$LOGS/$name.log" 2>&1
  fi
}
log() {
  if [ "$MODE" = chroot ]; then cat "$LOGS/$1.log" 2>/dev/null; else podman logs "pg-image-$1" 2>&1; fi
}
stop() {
  if [ "$MODE" = chroot ]; then
    kill -TERM "${PIDS[$1]}"; wait "${PIDS[$1]}"
  else
    podman stop -t 60 "pg-image-$1" > /dev/null &&
      return "$(podman inspect --format '{{.State.ExitCode}}' "pg-image-$1")"
  fi
}
PROC_MOUNTED=0
cleanup() {
  [ ${#PIDS[@]} -gt 0 ] && kill -9 "${PIDS[@]}" 2>/dev/null
  [ $PROC_MOUNTED = 1 ] && umount "$R/proc"
  if [ $PODMAN = 1 ]; then
    [ ${#CONTAINERS[@]} -gt 0 ] && podman rm -f "${CONTAINERS[@]}" > /dev/null 2>&1
    podman rmi -f "$IMAGE" > /dev/null 2>&1
  fi
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  for f in "$LOGS"/*.log; do [ -f "$f" ] && { echo "== $f"; tail -20 "$f"; }; done
  [ "$MODE" = podman ] && for c in "${CONTAINERS[@]}"; do echo "== podman logs $c"; podman logs "$c" 2>&1 | tail -20; done
  exit 1
}
set_mode chroot

bash "$BUILD" --bin_dir="$BIN" --rootfs="$R" --tag="$IMAGE" > "$T/build.log" 2>&1 ||
  { tail -20 "$T/build.log"; fail "build_image.sh"; }
# Binaries of a --config=asan build read their options and, at exit,
# LeakSanitizer its threads from /proc, which a container has and the bare
# rootfs has not: the chroot gets one (after the image was built from it).
if find "$R" -name 'libasan.so*' | grep -q .; then
  mkdir -p "$R/proc" && mount -t proc proc "$R/proc" || fail "cannot mount /proc in $R for AddressSanitizer"
  PROC_MOUNTED=1
fi
[ -s "$R.tar" ] || fail "no $R.tar"
[ ! -e "$R/bin/sh" ] && [ ! -e "$R/usr/bin" ] || fail "the rootfs has a shell or /usr/bin"
for b in "$R"/paragan/bin/*; do
  name=$(basename "$b")
  run "help_$name" "$name" --helpfull
  grep -q -- "--helpfull" "$LOGS/help_$name.log" || { head "$LOGS/help_$name.log"; fail "$name does not run in the rootfs"; }
done
echo "ok: every binary runs in the rootfs"

# train_job WHERE: a shard answers its health check, the data service and a
# worker train 20 steps with it, paragan_sample writes samples from its
# G_ema, SIGTERM makes it checkpoint and exit 0.
train_job() {
  local where=$1
  run init paragan_init --model=dcgan32 --out=/state/init.pgt || fail "paragan_init $where"
  start shard paragan_server --bind_address=127.0.0.1 --port=0 --port_file=/state/port \
    --init=/state/init.pgt --checkpoint_dir=/state --metrics_port=-1 || fail "starting the shard $where"
  for _ in $(seq 1 100); do [ -s "$STATE/port" ] && break; sleep 0.1; done
  PORT=$(cat "$STATE/port" 2>/dev/null) || fail "the shard $where wrote no port"
  local ok=0
  for _ in $(seq 1 50); do
    if run health paragan_health --address=127.0.0.1:$PORT; then ok=1; break; fi
    sleep 0.1
  done
  [ $ok = 1 ] || fail "paragan_health $where: $(cat "$LOGS/health.log")"
  echo "ok: the shard serves $where and answers its health check: $(cat "$LOGS/health.log")"
  start data paragan_data --bind_address=127.0.0.1 --port=0 --dataset=synthetic --batch_size=8 \
    --metrics_port=-1 || fail "starting the data service $where"
  local dport=""
  for _ in $(seq 1 100); do
    dport=$(log data | sed -n 's/.*listening on port \([0-9]*\).*/\1/p' | head -1)
    [ -n "$dport" ] && break
    sleep 0.1
  done
  [ -n "$dport" ] || fail "the data service $where printed no port"
  run worker paragan_worker --worker_id=w0 --ps=127.0.0.1:$PORT --data=127.0.0.1:$dport \
    --model=dcgan32 --batch_size=8 --threads=1 --steps=20 --log_every=10 ||
    fail "the worker $where did not train 20 steps"
  run sample paragan_sample --ps=127.0.0.1:$PORT --model=dcgan32 --num_samples=16 \
    --batch_size=8 --threads=1 --out_dir=/state/samples || fail "paragan_sample $where"
  ls "$STATE"/samples/*.npy > /dev/null 2>&1 || fail "no samples written $where: $(ls "$STATE/samples" 2>&1)"
  echo "ok: trained 20 steps $where and wrote $(cd "$STATE/samples" && ls | tr '\n' ' ')"
  stop data
  stop shard || fail "the shard $where did not exit 0 on SIGTERM"
  ls "$STATE"/shard-0-of-1*.pgt > /dev/null 2>&1 || fail "no checkpoint $where after SIGTERM"
  echo "ok: SIGTERM made the shard $where exit 0 and write $(cd "$STATE" && ls shard-0-of-1*.pgt)"
}

train_job "in the rootfs"

# The image, run by podman.
if [ $PODMAN = 0 ]; then
  echo "ok: podman or runc not installed (deploy/setup.sh installs them): the image was not built or run"
  echo PASS; exit 0
fi
set_mode podman
grep -q "built $IMAGE" "$T/build.log" || { tail -5 "$T/build.log"; fail "build_image.sh built no image"; }
[ "$(podman image inspect --format '{{.Config.User}}' "$IMAGE")" = 65532:65532 ] ||
  fail "the image does not run as 65532"
chown 65532:65532 "$P/state"
train_job "from the image's containers"
echo PASS

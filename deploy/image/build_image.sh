#!/usr/bin/env bash
# Builds the `paragan` container image FROM scratch: the service binaries
# under /paragan/bin, exactly the shared libraries they load (ldd) at their
# own paths, the dynamic loader, and an /etc with a non-root user (65532).
# No shell, no package manager. The CUDA driver (libcuda, libnvidia-*) is
# left out: the NVIDIA container runtime mounts the node's.
#   deploy/image/build_image.sh [--bin_dir=bazel-bin] [--rootfs=DIR] [--tag=paragan:dev]
# Writes DIR (default: a temporary directory) and DIR.tar (reproducible:
# sorted, mtime 0, root-owned), then builds the image with podman or
# buildah when one is installed (else says so and stops after the tar;
# `podman build -f deploy/image/Containerfile DIR.tar's directory` later).
set -euo pipefail
BIN_DIR=bazel-bin ROOTFS="" TAG=paragan:dev
for a in "$@"; do
  case $a in
    --bin_dir=*) BIN_DIR=${a#*=} ;;
    --rootfs=*) ROOTFS=${a#*=} ;;
    --tag=*) TAG=${a#*=} ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "build_image.sh: unknown argument $a (see --help)" >&2; exit 2 ;;
  esac
done
BINARIES=(
  server/paragan_server dataloader/paragan_data worker/distributed/paragan_worker
  worker/train/paragan_init worker/train/paragan_sample worker/train/paragan_export
  worker/eval/paragan_eval deploy/health/paragan_health
)
for b in "${BINARIES[@]}"; do
  [ -x "$BIN_DIR/$b" ] || { echo "build_image.sh: no $BIN_DIR/$b (bazel build //...)" >&2; exit 1; }
done
[ -n "$ROOTFS" ] || ROOTFS=$(mktemp -d)/rootfs
[ ! -e "$ROOTFS" ] || [ -z "$(ls -A "$ROOTFS")" ] ||
  { echo "build_image.sh: $ROOTFS is not empty; give a new directory" >&2; exit 1; }
mkdir -p "$ROOTFS/paragan/bin" "$ROOTFS/etc" "$ROOTFS/tmp" "$ROOTFS/state"
chmod 1777 "$ROOTFS/tmp"
declare -A LIBS=()
for b in "${BINARIES[@]}"; do
  cp -L "$BIN_DIR/$b" "$ROOTFS/paragan/bin/"
  # "libx.so => /path (0x...)" and the loader's "/lib64/ld-linux... (0x...)"
  while read -r lib; do LIBS[$lib]=1; done < <(
    ldd "$BIN_DIR/$b" | awk '/=> \// {print $3} /^[ \t]*\/[^ ]+ \(/ {print $1}')
  if ldd "$BIN_DIR/$b" | grep -q "not found"; then
    echo "build_image.sh: $b needs libraries this machine lacks:" >&2
    ldd "$BIN_DIR/$b" | grep "not found" >&2; exit 1
  fi
done
n=0
for lib in "${!LIBS[@]}"; do
  case $(basename "$lib") in libcuda.so*|libnvidia-*) continue ;; esac
  mkdir -p "$ROOTFS$(dirname "$lib")"
  cp -L "$lib" "$ROOTFS$lib"
  n=$((n + 1))
done
# No ld.so.cache: the loader finds libraries named by soname in its default
# directories (Debian's include the multiarch ones), where ldd found them.
printf 'root:x:0:0:root:/:/nonexistent\nparagan:x:65532:65532:paragan:/state:/nonexistent\n' > "$ROOTFS/etc/passwd"
printf 'root:x:0:\nparagan:x:65532:\n' > "$ROOTFS/etc/group"
printf 'hosts: files dns\n' > "$ROOTFS/etc/nsswitch.conf"
chown 65532:65532 "$ROOTFS/state" 2>/dev/null || true
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$ROOTFS" -cf "$ROOTFS.tar" .
echo "build_image.sh: $ROOTFS: ${#BINARIES[@]} binaries, $n libraries; $ROOTFS.tar $(du -m "$ROOTFS.tar" | cut -f1) MiB"
builder=""
command -v podman >/dev/null && builder=podman
[ -z "$builder" ] && command -v buildah >/dev/null && builder="buildah"
if [ -z "$builder" ]; then
  echo "build_image.sh: no podman or buildah: stopping at $ROOTFS.tar"
  exit 0
fi
ctx=$(dirname "$ROOTFS")
cp "$(dirname "$0")/Containerfile" "$ctx/Containerfile"
[ "$(basename "$ROOTFS").tar" = rootfs.tar ] || cp "$ROOTFS.tar" "$ctx/rootfs.tar"
if [ "$builder" = podman ]; then podman build -t "$TAG" -f "$ctx/Containerfile" "$ctx"
else buildah bud -t "$TAG" -f "$ctx/Containerfile" "$ctx"; fi
echo "build_image.sh: built $TAG"

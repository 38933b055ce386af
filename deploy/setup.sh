#!/usr/bin/env bash
# Installs every Debian package that building, testing and benchmarking
# ParaGAN needs, and the npm packages of the manifests' validator.
# Idempotent: does nothing when all are present.
set -euo pipefail

PACKAGES=(
  # Bazel, offline (see third_party/ and .bazelrc)
  bazel-bootstrap bazel-platforms bazel-rules-java bazel-rules-proto bazel-skylib
  # toolchain and libraries
  g++ pkg-config protobuf-compiler protobuf-compiler-grpc libprotobuf-dev
  libgrpc++-dev libabsl-dev libgtest-dev libgmock-dev prometheus-cpp-dev
  libdnnl-dev libopenblas-dev libpng-dev libjpeg62-turbo-dev zlib1g-dev
  libzstd-dev liblz4-dev
  # data, and the PyTorch reference used by fixtures and benchmarks
  dataset-fashion-mnist python3-numpy python3-torch
  # tools used by tests and scripts (prometheus: the real-scrape test)
  curl git clang-format prometheus
  # congestion tests: real links in network namespaces (ip, tc) and a bulk flow
  iproute2 iperf3
  # the image test: build the image FROM scratch and run a job from it
  podman buildah runc netavark
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The Kubernetes manifests' validator (//tests/k8s:manifests_test): the npm
# packages of tests/k8s/package-lock.json, in a fixed place the test looks
# in. Without node/npm or the registry the test skips and says why; the
# rest of the suite does not need them.
K8S_TOOLS=${PARAGAN_K8S_TOOLS:-/opt/paragan-tools/k8s-validate}
lock="$(dirname "$0")/../tests/k8s/package-lock.json"
if command -v npm >/dev/null && ! cmp -s "$lock" "$K8S_TOOLS/package-lock.json"; then
  echo "setup: installing the manifests' validator into $K8S_TOOLS (npm ci)"
  $SUDO mkdir -p "$K8S_TOOLS"
  $SUDO cp "$(dirname "$lock")/package.json" "$lock" "$K8S_TOOLS/"
  (cd "$K8S_TOOLS" && $SUDO npm ci --no-audit --no-fund --loglevel=error) ||
    { echo "setup: npm ci failed: //tests/k8s:manifests_test will skip"; $SUDO rm -f "$K8S_TOOLS/package-lock.json"; }
fi

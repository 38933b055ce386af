#!/usr/bin/env bash
# Installs every Debian package that building, testing and benchmarking
# ParaGAN needs. Idempotent: does nothing when all are present.
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
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "setup: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"

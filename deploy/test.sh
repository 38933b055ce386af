#!/usr/bin/env bash
# Runs the whole test suite: installs what is missing, builds, tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/setup.sh
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
# The CUDA backend is compiled on every run so it cannot rot; its tests run
# here too and skip (with the reason) where no GPU is present. The log starts
# empty: the summary counts both invocations.
cuda=${CUDA_PATH:-/usr/local/cuda}
if [ -x "$cuda/bin/nvcc" ]; then
  { bazel build --config=cuda //worker/engine/... //worker/train/... &&
    bazel test --config=cuda //worker/engine:cuda_backend_test \
      //worker/train:gpu_training_test "$@"; } 2>&1 | tee -a "$log" ||
    status=$?
else
  echo "note: no CUDA toolkit at $cuda: the --config=cuda build was skipped"
fi
# The services' and parsers' tests again under AddressSanitizer and
# LeakSanitizer (their fuzz targets' replays included): the code that reads
# bytes from the network and from files.
bazel test --config=asan //server/... //dataloader/... //common/... "$@" 2>&1 |
  tee -a "$log" || status=$?
# Last, so bazel-bin points at the default (CPU) build afterwards.
bazel test //... "$@" 2>&1 | tee -a "$log" || status=$?
passed=$(grep -cE '^//\S+\s+(\(cached\) )?PASSED' "$log" || true)
failed=$(grep -cE '^//\S+\s+(\(cached\) )?(FAILED|TIMEOUT|NO STATUS)' "$log" || true)
echo "test targets: ${passed} passed, ${failed} failed"
exit "$status"

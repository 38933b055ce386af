#!/usr/bin/env bash
# Runs the whole test suite: installs what is missing, builds, tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/setup.sh
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
bazel test //... "$@" 2>&1 | tee "$log" || status=$?
passed=$(grep -cE '^//\S+\s+(\(cached\) )?PASSED' "$log" || true)
failed=$(grep -cE '^//\S+\s+(\(cached\) )?(FAILED|TIMEOUT|NO STATUS)' "$log" || true)
echo "test targets: ${passed} passed, ${failed} failed"
exit "$status"

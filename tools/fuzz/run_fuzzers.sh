#!/usr/bin/env bash
# Long fuzzing runs with libFuzzer (clang-14, ASan + UBSan): builds every
# paragan_fuzz_target with --config=fuzz in its own output base (the default
# build's cache stays as it is), then runs each for the given time on a
# working copy of its committed corpus, and prints a table. Crashes land in
# $work/<target>/ as crash-*/leak-*/timeout-* files: fix the bug, then add
# the input to the target's fuzz_corpus/ as a regression seed.
#
#   tools/fuzz/run_fuzzers.sh [--seconds N] [--jobs J] [--work DIR] [target...]
#   (targets as //pkg:name_fuzzer; default: all of them)
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=600
jobs=1
work=/tmp/paragan-fuzz
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    -h|--help) sed -n 2,11p "$0"; exit 0 ;;
    -*) echo "run_fuzzers: unknown flag $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
for p in clang-14 libfuzzer-14-dev; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends clang-14 libfuzzer-14-dev
    break
  fi
done
# Its own output base, and no convenience symlinks: bazel-bin and friends
# keep pointing at the default build (and //... never sees this one).
bazel_fuzz() { bazel --output_base="${HOME}/.cache/paragan-fuzz-bazel" "$@"; }
if [ ${#targets[@]} -eq 0 ]; then
  # The top-level packages, not //...: the default build's convenience
  # symlinks (bazel-<workspace>) would be loaded as packages here.
  query=$(bazel_fuzz query 'attr(tags, "fuzz", tests(//common/... + //server/... + //dataloader/... + //worker/... + //deploy/... + //tests/... + //tools/...))') ||
    { echo "run_fuzzers: bazel query failed" >&2; exit 1; }
  mapfile -t targets < <(sed 's/_test$//' <<<"$query")
fi
if [ ${#targets[@]} -eq 0 ]; then
  echo "run_fuzzers: no fuzz targets found" >&2
  exit 1
fi
bazel_fuzz build --config=fuzz --symlink_prefix=/ "${targets[@]}"
bin=$(bazel_fuzz info --config=fuzz bazel-bin 2>/dev/null)
mkdir -p "$work"
# Each target in turn, `jobs` at a time (one core each).
run_one() {
  local t=$1 pkg=${1#//}; pkg=${pkg%%:*}
  local name=${1##*:} dir="$work/${1##*:}"
  mkdir -p "$dir/corpus"
  cp -n "$pkg/fuzz_corpus/$name/"* "$dir/corpus/" 2>/dev/null || true
  (cd "$dir" && "$bin/$pkg/$name" -max_total_time="$seconds" -timeout=20 \
     -rss_limit_mb=2560 -print_final_stats=1 -artifact_prefix="$dir/" \
     corpus > "$dir/log" 2>&1) && echo ok > "$dir/status" || echo "FAILED ($?)" > "$dir/status"
}
running=0
for t in "${targets[@]}"; do
  run_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then wait -n || true; running=$((running - 1)); fi
done
wait || true
printf '%-22s %-10s %12s %8s %8s %s\n' target status runs cov corpus artifacts
fail=0
for t in "${targets[@]}"; do
  name=${t##*:} dir="$work/${t##*:}"
  runs=$(grep -oE 'stat::number_of_executed_units: [0-9]+' "$dir/log" | awk '{print $2}' || true)
  cov=$(grep -oE 'cov: [0-9]+' "$dir/log" | tail -1 | awk '{print $2}' || true)
  artifacts=$(ls "$dir" | grep -cE '^(crash|leak|timeout|oom|slow-unit)-' || true)
  st=$(cat "$dir/status")
  [ "$st" = ok ] && [ "$artifacts" = 0 ] || fail=1
  printf '%-22s %-10s %12s %8s %8s %s\n' "$name" "$st" "${runs:-?}" "${cov:-?}" \
    "$(ls "$dir/corpus" | wc -l)" "$artifacts"
done
exit $fail

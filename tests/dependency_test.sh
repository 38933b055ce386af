#!/bin/bash
# The dependency graph runs one way: each file is `bazel query deps(...)` of
# one binary (genquery), and none may contain what that binary must not link.
#   dependency_test.sh <deps file> <forbidden ERE> [<deps file> <ERE>]...
set -u
status=0
while [ $# -ge 2 ]; do
  file=$1 forbidden=$2; shift 2
  [ -s "$file" ] || { echo "FAIL: $file is empty"; status=1; continue; }
  bad=$(grep -E "$forbidden" "$file")
  if [ -n "$bad" ]; then
    echo "FAIL: $(basename "$file") reaches what it must not (/$forbidden/):"
    echo "$bad" | head -20 | sed 's/^/  /'
    status=1
  else
    echo "ok: $(basename "$file"): $(wc -l <"$file") targets, none matches /$forbidden/"
  fi
done
[ $status -eq 0 ] && echo PASS
exit $status

# Sourced by the service tests. make_bin_dir BINARY... lays the binaries out
# as bazel-bin does (what paragan_local --bin_dir expects), each by its
# runfiles path (server/paragan_server, ...), in a new directory it prints.
make_bin_dir() {
  local dir p
  dir=$(mktemp -d)
  for p in "$@"; do
    mkdir -p "$dir/$(dirname "$p")"
    ln -s "$(readlink -f "$p")" "$dir/$p"
  done
  echo "$dir"
}

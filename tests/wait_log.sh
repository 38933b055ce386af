# Sourced by the system test scripts that start processes themselves.
#   wait_log FILE REGEX SECONDS: until a line of FILE matches REGEX
#     (grep -E); returns 1 when the time is up.
wait_log() {
  local i
  for i in $(seq $(($3 * 10))); do
    grep -qE "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

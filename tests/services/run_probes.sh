# Sourced by the service tests that watch a paragan_local run. Expects OUT
# (the run's --out_dir), LOCAL_PID (the launcher) and a fail function.
#   shard_metric SHARD PREFIX: the sum of shard SHARD's metric lines
#     starting with PREFIX, from its /metrics page.
#   scale_workers N: paragan_local --scale_workers=N on the run (needs
#     LOCAL); fails unless it answers that the run has N workers.
#   shard_pids: the running shards' process ids.
#   registered_on_two_shards N: N workers registered in both tables of
#     shards 0 and 1.
#   wait_for SECONDS DESCRIPTION COMMAND...: until COMMAND succeeds; fails
#     when the time is up or the launcher exited.
shard_metric() {
  local m
  m=$(sed -n 's/.*metrics on port \([0-9]*\).*/\1/p' "$OUT/logs/shard$1.log" 2>/dev/null | head -1)
  [ -n "$m" ] || return 1
  curl -s --max-time 2 "http://127.0.0.1:$m/metrics" | grep "^$2" | awk '{s += $2} END {print s + 0}'
}
wait_for() {
  local secs=$1 until=$((SECONDS + $1)) what=$2; shift 2
  while ! "$@"; do
    [ $SECONDS -lt $until ] || fail "not within ${secs}s: $what"
    kill -0 "$LOCAL_PID" 2>/dev/null || fail "paragan_local exited while waiting: $what"
    sleep 0.2
  done
}
registered_on_two_shards() {
  local s t
  for s in 0 1; do for t in D G; do
    [ "$(shard_metric $s 'paragan_ps_registered_workers{shard="'$s'",table="'$t'"}')" = "$1" ] || return 1
  done; done
}
scale_workers() {
  local out
  out=$("$LOCAL" --out_dir="$OUT" --scale_workers=$1 2>&1) || fail "--scale_workers=$1: $out"
  echo "$out"
  echo "$out" | grep -q "$1 worker(s):" || fail "--scale_workers=$1 answered: $out"
}
shard_pids() { pgrep -f -- "--shard_id=" | sort | tr '\n' ' '; }

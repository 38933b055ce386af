#!/usr/bin/env bash
# promtool checks the alert rules and runs their unit tests (each alert
# fires on the series it is for, with its labels and text, and not on the
# ones beside it). Skips when promtool (Debian package prometheus) is missing.
# Also checks prometheus-kubernetes.yml (the scrape configuration for
# clusters without the Prometheus Operator), which loads the rules.
#   args: paragan-alerts.yml paragan-alerts_test.yml prometheus-kubernetes.yml
set -euo pipefail
PROMTOOL=${PROMTOOL:-/usr/bin/promtool}
[ -x "$PROMTOOL" ] || { echo "SKIP: $PROMTOOL is missing (Debian package prometheus)"; exit 0; }
T=${TEST_TMPDIR:-$(mktemp -d)}/rules
rm -rf "$T"; mkdir -p "$T"
# The test file names the rules by a path relative to itself.
cp "$1" "$T/paragan-alerts.yml"
cp "$2" "$T/paragan-alerts_test.yml"
cp "$3" "$T/prometheus-kubernetes.yml"
"$PROMTOOL" check rules "$T/paragan-alerts.yml"
(cd "$T" && "$PROMTOOL" test rules paragan-alerts_test.yml)
# Debian's Prometheus is built without Kubernetes discovery: it checks the
# rest (relabelings, rule files) with the discovery swapped for a static list.
config_check=$("$PROMTOOL" check config "$T/prometheus-kubernetes.yml" 2>&1) || true
if echo "$config_check" | grep -q "field kubernetes_sd_configs not found"; then
  echo "note: this promtool has no Kubernetes discovery: checking with static_configs in its place"
  awk '/kubernetes_sd_configs:/ {print "    static_configs:"; getline; print "      - targets: [\"127.0.0.1:9090\"]"; next} {print}' \
    "$T/prometheus-kubernetes.yml" > "$T/prometheus-static.yml"
  grep -q "static_configs:" "$T/prometheus-static.yml" || { echo "FAIL: no kubernetes_sd_configs to swap"; exit 1; }
  "$PROMTOOL" check config "$T/prometheus-static.yml"
else
  "$PROMTOOL" check config "$T/prometheus-kubernetes.yml"
fi
echo PASS

#!/usr/bin/env bash
# The Kubernetes manifests: each overlay of deploy/k8s renders with
# `kubectl kustomize`; every object passes the Kubernetes and Prometheus
# Operator schemas with no unknown field (validate.mjs); the job's parts
# agree (consistency.mjs); and every flag a container passes is a flag of
# the binary it runs (each binary's --helpfull). Skips, saying why, without
# kubectl or the validator's npm packages (deploy/setup.sh installs them).
#   args: validator_dir paragan_server paragan_data paragan_worker paragan_init paragan_eval paragan_health
set -uo pipefail
TOOLS=$1; shift
command -v kubectl >/dev/null || { echo "SKIP: no kubectl (its kustomize renders the overlays)"; exit 0; }
command -v node >/dev/null || { echo "SKIP: no node (the validator is a Node.js script)"; exit 0; }
[ -d "$TOOLS/node_modules/kubernetes-models" ] ||
  { echo "SKIP: no validator packages in $TOOLS (deploy/setup.sh: npm ci of tests/k8s/package-lock.json)"; exit 0; }
declare -A BIN
for b in "$@"; do BIN[$(basename "$b")]=$b; done
HERE=$(dirname "$0")
T=${TEST_TMPDIR:-$(mktemp -d)}/k8s
rm -rf "$T"; mkdir -p "$T/work"
# Real files (kustomize refuses files that resolve outside their root).
cp -rL deploy/k8s deploy/monitoring "$T/work/" 2>/dev/null || cp -rL "$HERE/../../deploy/k8s" "$HERE/../../deploy/monitoring" "$T/work/"
mkdir -p "$T/work/deploy" && mv "$T/work/k8s" "$T/work/monitoring" "$T/work/deploy/"
cp "$HERE/validate.mjs" "$HERE/consistency.mjs" "$T/"
ln -s "$TOOLS/node_modules" "$T/node_modules"
status=0
for overlay in cpu gpu cpu-secure gpu-secure; do
  out=$T/$overlay.yaml
  if ! kubectl kustomize "$T/work/deploy/k8s/overlays/$overlay" > "$out" 2> "$T/$overlay.err"; then
    cat "$T/$overlay.err"; echo "FAIL: kubectl kustomize deploy/k8s/overlays/$overlay"; status=1; continue
  fi
  echo "== $overlay: $(grep -c '^kind:' "$out") objects"
  mkdir -p "$T/ts-$overlay" && ln -sfn "$TOOLS/node_modules" "$T/ts-$overlay/node_modules"
  node "$T/validate.mjs" "$T/ts-$overlay" "$out" || { echo "FAIL: $overlay: schema"; status=1; }
  node "$T/consistency.mjs" "$overlay" "$out" "$T/work/deploy/monitoring/paragan-alerts.yml" \
    "$T/work/deploy/monitoring/paragan-dashboard.json" || { echo "FAIL: $overlay: consistency"; status=1; }
  # "binary<TAB>--flag" for every container argument and exec probe.
  node --input-type=module -e '
    import {readFileSync} from "node:fs";
    import YAML from "'"$TOOLS"'/node_modules/yaml/dist/index.js";
    for (const d of YAML.parseAllDocuments(readFileSync(process.argv[1], "utf8"))) {
      const o = d.toJSON();
      const pod = o && o.spec && o.spec.template && o.spec.template.spec;
      if (!pod) continue;
      for (const c of [...(pod.initContainers || []), ...pod.containers]) {
        const lines = [[c.command[0], c.args || []]];
        for (const p of [c.readinessProbe, c.livenessProbe]) if (p && p.exec) lines.push([p.exec.command[0], p.exec.command.slice(1)]);
        for (const [bin, args] of lines) for (const a of args) console.log(bin.split("/").pop() + "\t" + a.split("=")[0]);
      }
    }' "$out" | sort -u > "$T/$overlay.flags" || { echo "FAIL: $overlay: cannot list the flags"; status=1; }
  while IFS=$'\t' read -r bin f; do
    [ -n "${BIN[$bin]:-}" ] || { echo "FAIL: $overlay runs $bin, which the image does not build"; status=1; continue; }
    [ -f "$T/$bin.help" ] || "${BIN[$bin]}" --helpfull > "$T/$bin.help" 2>&1
    if grep -Eq -- "^ *${f}( |\$)" "$T/$bin.help"; then :; else
      echo "FAIL: $overlay passes $f to $bin, which has no such flag"; status=1
    fi
  done < "$T/$overlay.flags"
  echo "ok: $overlay: $(wc -l < "$T/$overlay.flags") container flags are their binaries' flags"
done
[ $status = 0 ] && echo PASS
exit $status

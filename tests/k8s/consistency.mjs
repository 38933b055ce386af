// What the schemas cannot see: the rendered job's parts agree with each
// other and with the rest of the repository.
//   node consistency.mjs <cpu|gpu|cpu-secure|gpu-secure> <rendered.yaml> <paragan-alerts.yml> <paragan-dashboard.json>
// - the shard count: the StatefulSet's replicas, every shard's --num_shards,
//   and the workers' and the evaluator's --ps lists (one name per shard, on
//   the Service's gRPC port); the workers' --data on the data Service's port;
// - every pod's "metrics" port is the one its process serves on, and the
//   PodMonitor selects every pod; gRPC health probes ask the process's port;
// - the shards' and the data service's Service, container ports and
//   NetworkPolicy list exactly the ports the process opens (its flags);
// - restricted security contexts, a writable /tmp, every $(VAR) defined;
//   NetworkPolicies for every component and a PodDisruptionBudget for shards;
// - the PrometheusRule holds paragan-alerts.yml's groups, the dashboard
//   ConfigMap holds paragan-dashboard.json, byte for byte;
// - cpu workers run --device=cpu without GPUs, gpu workers --device=cuda
//   with one; every image is a full reference (the overlay names it);
// - the -secure overlays: servers require the token and client certificates, clients
//   send both, every such file is a key of the Secret mounted read-only where
//   the flag points (the keys deploy/k8s/components/secure tells users to
//   create), shards open no data plane, and the probes ask over mutual TLS;
//   the other overlays carry no security flag.
import {readFileSync} from "node:fs";
import {isDeepStrictEqual} from "node:util";
import YAML from "yaml";

const [flavour, rendered, alertsFile, dashboardFile] = process.argv.slice(2);
const objects = YAML.parseAllDocuments(readFileSync(rendered, "utf8")).map((d) => d.toJSON()).filter(Boolean);
const errors = [];
const check = (ok, what) => { if (!ok) errors.push(what); else console.log(`ok: ${what}`); };
const find = (kind, name) => objects.find((o) => o.kind === kind && o.metadata.name === name);
const flag = (container, name) => {
  const f = (container.args || []).find((a) => a.startsWith(`--${name}=`));
  return f === undefined ? undefined : f.slice(name.length + 3);
};
const mainContainer = (w) => w.spec.template.spec.containers[0];

const ps = find("StatefulSet", "paragan-ps");
const psService = find("Service", "paragan-ps");
const dataService = find("Service", "paragan-data");
const data = find("Deployment", "paragan-data");
const worker = find("Deployment", "paragan-worker");
const evaluator = find("Deployment", "paragan-eval");
for (const [what, o] of Object.entries({ps, psService, dataService, data, worker, evaluator})) {
  if (!o) { console.error(`FAIL: no ${what} in ${rendered}`); process.exit(1); }
}
const shards = ps.spec.replicas;
const shard = mainContainer(ps);
check(flag(shard, "num_shards") === String(shards), `--num_shards=${flag(shard, "num_shards")} matches the StatefulSet's ${shards} replicas`);
const grpcPort = (svc) => svc.spec.ports.find((p) => p.name === "grpc").port;
check(flag(shard, "port") === String(grpcPort(psService)), "the shards serve on the paragan-ps Service's gRPC port");
check(psService.spec.clusterIP === "None" && ps.spec.serviceName === "paragan-ps", "paragan-ps is headless and governs the StatefulSet (per-shard names)");
const psList = [...Array(shards).keys()].map((i) => `paragan-ps-${i}.paragan-ps:${grpcPort(psService)}`).join(",");
for (const [name, w] of [["worker", worker], ["evaluator", evaluator]]) {
  check(flag(mainContainer(w), "ps") === psList, `the ${name}'s --ps names every shard: ${psList}`);
}
check(flag(mainContainer(worker), "data") === `paragan-data:${grpcPort(dataService)}`, "the workers' --data is the paragan-data Service");
check(flag(mainContainer(data), "port") === String(grpcPort(dataService)), "the data service serves on its Service's port");

// The ports a server opens, from its flags (an absent flag opens none).
const portFlags = {"paragan-ps": ["port", "data_plane_port", "metrics_port"], "paragan-data": ["port", "metrics_port"]};
for (const [w, svc] of [[ps, psService], [data, dataService]]) {
  const name = w.metadata.name;
  const listed = (ports) => ports.map(Number).sort((a, b) => a - b);
  const opens = listed(portFlags[name].map((f) => flag(mainContainer(w), f)).filter((v) => v !== undefined));
  check(isDeepStrictEqual(listed(svc.spec.ports.map((p) => p.port)), opens),
        `the ${name} Service lists the ports the process opens (${opens.join(" ")})`);
  check(isDeepStrictEqual(listed((mainContainer(w).ports || []).map((p) => p.containerPort)), opens),
        `${name}'s container ports are the ports the process opens`);
  const component = w.spec.template.metadata.labels["app.kubernetes.io/component"];
  const policy = objects.find((o) => o.kind === "NetworkPolicy" && o.spec.podSelector.matchLabels &&
                                     o.spec.podSelector.matchLabels["app.kubernetes.io/component"] === component);
  const allowed = policy ? listed(policy.spec.ingress.flatMap((r) => (r.ports || []).map((p) => p.port))) : [];
  check(isDeepStrictEqual(allowed, opens), `${name}'s NetworkPolicy admits exactly the ports the process opens (${allowed.join(" ")})`);
}

const secure = flavour.endsWith("-secure");
const gpu = flavour.startsWith("gpu");
const securityFlags = ["auth_token_file", "tls_cert_file", "tls_key_file", "tls_ca_file", "tls_server_name"];
const serverFlags = ["auth_token_file", "tls_cert_file", "tls_key_file", "tls_ca_file"];
const clientFlags = serverFlags;  // the same four, with the client's pair
// [what, the flags' holder, the container whose mounts hold the files, its pod, role]
const securedContainers = [];

const podMonitor = find("PodMonitor", "paragan");
const selector = podMonitor.spec.selector.matchLabels;
for (const w of [ps, data, worker, evaluator]) {
  const labels = w.spec.template.metadata.labels;
  check(Object.entries(selector).every(([k, v]) => labels[k] === v), `the PodMonitor selects ${w.kind}/${w.metadata.name}'s pods`);
  check(labels["paragan.io/job"] !== undefined && labels["app.kubernetes.io/component"] !== undefined,
        `${w.metadata.name}'s pods carry the job and component labels the PodMonitor relabels`);
  const c = mainContainer(w);
  const metrics = (c.ports || []).find((p) => p.name === "metrics");
  check(metrics && String(metrics.containerPort) === flag(c, "metrics_port"), `${w.metadata.name}'s "metrics" port is its --metrics_port`);
  for (const probe of [c.readinessProbe, c.livenessProbe].filter(Boolean)) {
    if (secure) {
      const cmd = (probe.exec && probe.exec.command) || [];
      const probeFlag = (name) => flag({args: cmd.slice(1)}, name);
      check(/\/paragan_health$/.test(cmd[0] || "") && probeFlag("address") === `127.0.0.1:${flag(c, "port")}`,
            `${w.metadata.name}'s exec health probe asks its --port with paragan_health (${cmd[0]} ${probeFlag("address")})`);
      for (const f of [...clientFlags, "tls_server_name"]) {
        check(probeFlag(f) !== undefined, `${w.metadata.name}'s health probe passes --${f}`);
      }
      securedContainers.push([`${w.metadata.name}'s probe`, {args: cmd.slice(1)}, c, w.spec.template.spec, "client"]);
    } else {
      check(probe.grpc && String(probe.grpc.port) === flag(c, "port"), `${w.metadata.name}'s gRPC health probe asks its --port (${probe.grpc && probe.grpc.port})`);
    }
  }
  const pod = w.spec.template.spec;
  const psc = pod.securityContext || {};
  check(psc.runAsNonRoot === true && psc.seccompProfile && psc.seccompProfile.type === "RuntimeDefault",
        `${w.metadata.name}'s pods run as non-root with the RuntimeDefault seccomp profile`);
  const config = objects.find((o) => o.kind === "ConfigMap" && o.metadata.name.startsWith("paragan-config"));
  for (const x of [...(pod.initContainers || []), ...pod.containers]) {
    const where = `${w.metadata.name}/${x.name}`;
    check(/^[^/]+\.[^/]+\/.+:.+/.test(x.image), `${where}'s image is a full reference (${x.image})`);
    const sc = x.securityContext || {};
    check(sc.allowPrivilegeEscalation === false && sc.readOnlyRootFilesystem === true &&
          sc.capabilities && isDeepStrictEqual(sc.capabilities.drop, ["ALL"]),
          `${where}: no privilege escalation, read-only root, all capabilities dropped`);
    check((x.volumeMounts || []).some((m) => m.mountPath === "/tmp"), `${where} has a writable /tmp`);
    // $(VAR) in a flag: from the container's env or the config map it reads.
    const defined = new Set((x.env || []).map((e) => e.name));
    for (const from of x.envFrom || []) {
      if (config && from.configMapRef && from.configMapRef.name === config.metadata.name) {
        Object.keys(config.data).forEach((k) => defined.add(k));
      }
    }
    const used = (x.args || []).flatMap((a) => [...a.matchAll(/\$\(([A-Z_]+)\)/g)].map((m) => m[1]));
    check(used.every((v) => defined.has(v)), `${where}'s $(...) in flags are defined (${[...new Set(used)].join(" ") || "none"})`);
  }
}
const policies = objects.filter((o) => o.kind === "NetworkPolicy");
for (const component of ["ps", "data", "worker", "eval"]) {
  check(policies.some((p) => {
    const sel = p.spec.podSelector;
    return (sel.matchLabels && sel.matchLabels["app.kubernetes.io/component"] === component) ||
        (sel.matchExpressions || []).some((e) => e.key === "app.kubernetes.io/component" && e.operator === "In" && e.values.includes(component));
  }), `a NetworkPolicy restricts what reaches the ${component} pods`);
}
const pdb = objects.find((o) => o.kind === "PodDisruptionBudget");
check(pdb && pdb.spec.selector.matchLabels["app.kubernetes.io/component"] === "ps", "a PodDisruptionBudget covers the shards");
const rule = find("PrometheusRule", "paragan");
check(isDeepStrictEqual(rule.spec.groups, YAML.parse(readFileSync(alertsFile, "utf8")).groups), "the PrometheusRule holds paragan-alerts.yml's groups");
const dashboard = find("ConfigMap", "paragan-dashboard");
check(dashboard.data["paragan-dashboard.json"] === readFileSync(dashboardFile, "utf8"), "the dashboard ConfigMap holds paragan-dashboard.json");
check(dashboard.metadata.labels.grafana_dashboard === "1", "the dashboard ConfigMap carries Grafana's sidecar label");

// The token and certificates: each file a key of a Secret mounted read-only
// at the flag's folder; those keys are the ones the overlay's comment tells
// users to create.
const secretKeys = {"paragan-auth": ["token"],
  "paragan-tls": ["ca.pem", "server.pem", "server.key", "client.pem", "client.key"]};
const fileOf = (holder, c, pod, f) => {
  const path = flag(holder, f);
  if (path === undefined) return `no --${f}`;
  const mount = (c.volumeMounts || []).find((m) => path.startsWith(`${m.mountPath}/`));
  if (!mount) return `--${f}=${path} is on no mounted volume`;
  const volume = (pod.volumes || []).find((v) => v.name === mount.name);
  const secret = volume && volume.secret;
  if (!secret) return `--${f}=${path} is not on a Secret`;
  const key = path.slice(mount.mountPath.length + 1);
  if (!(secretKeys[secret.secretName] || []).includes(key)) return `--${f}=${path}: ${secret.secretName} has no key ${key}`;
  const mode = secret.defaultMode;  // unset: 0644, readable by all
  if (mount.readOnly !== true || mode === undefined || (mode & 0o077) !== (mode & 0o040)) {
    return `--${f}=${path}: ${secret.secretName} is not mounted read-only for the owner and group only`;
  }
  return "";
};
if (secure) {
  for (const [w, role] of [[ps, "server"], [data, "server"], [worker, "client"], [evaluator, "client"]]) {
    securedContainers.push([w.metadata.name, mainContainer(w), mainContainer(w), w.spec.template.spec, role]);
  }
  for (const [what, holder, c, pod, role] of securedContainers) {
    for (const f of role === "server" ? serverFlags : clientFlags) {
      const why = fileOf(holder, c, pod, f);
      check(why === "", `${what}: --${f} is a key of a read-only Secret${why && ` (${why})`}`);
    }
    // The server and client pairs are server.pem/.key and client.pem/.key.
    check(flag(holder, "tls_cert_file").endsWith(`/${role}.pem`) && flag(holder, "tls_key_file").endsWith(`/${role}.key`),
          `${what} presents the ${role} certificate`);
  }
  check(flag(shard, "data_plane_port") === undefined, "the shards open no data plane under TLS (no --data_plane_port)");
} else {
  for (const w of [ps, data, worker, evaluator]) {
    const present = securityFlags.filter((f) => flag(mainContainer(w), f) !== undefined);
    check(present.length === 0, `${w.metadata.name} runs without security flags in ${flavour} (${present.join(" ") || "none"})`);
  }
}

const wc = mainContainer(worker);
const gpus = ((wc.resources || {}).limits || {})["nvidia.com/gpu"];
if (gpu) {
  check(flag(wc, "device") === "cuda" && gpus === 1, "gpu workers run --device=cuda with one GPU each");
} else {
  check(flag(wc, "device") === "cpu" && gpus === undefined, "cpu workers run --device=cpu and ask for no GPU");
}
if (errors.length) {
  for (const e of errors) console.error(`FAIL: ${e}`);
  process.exit(1);
}

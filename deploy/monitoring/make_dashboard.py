#!/usr/bin/env python3
"""Writes paragan-dashboard.json, the Grafana dashboard of ParaGAN jobs.

Edit the panels here and rerun (python3 deploy/monitoring/make_dashboard.py
[OUT]);
the JSON is committed so that nothing else needs Python. Every query selects
namespace=~"$namespace",paragan_job=~"$job" (the labels paragan_local's
prometheus_targets.json and the PodMonitor give), and
//tests/services:dashboard_test runs each against a real run.
"""
import json
import os

# The dashboard's variables: every query is filtered by them.
S='namespace=~"$namespace",paragan_job=~"$job"'
R='[$__rate_interval]'


# rows: (title, [(panel title, unit, [(query, legend)], description)])
def sel(extra=''):
    return '{'+S+(','+extra if extra else '')+'}'
rows=[
 ("Training", [
  ("Real images per second", "ops", [("sum(rate(paragan_worker_images_total%s%s))"%(sel(),R), "images/s")],
   "Real images consumed by D steps, all workers."),
  ("Real images per second by worker", "ops", [("sum by (worker) (rate(paragan_worker_images_total%s%s))"%(sel(),R), "{{worker}}")],
   "Real images each worker's D steps consumed (G workers read none)."),
  ("Steps per second by role", "ops", [("sum by (role) (rate(paragan_worker_steps_total%s%s) * on (namespace, paragan_job, worker) group_left (role) (paragan_worker_role%s == 1))"%(sel(),R,sel()), "{{role}}")],
   "Worker steps by the role each worker runs now: both (coupled), g_only, d_only (decoupled; role auto moves workers between them)."),
  ("Steps per second by worker", "ops", [("sum by (worker) (rate(paragan_worker_steps_total%s%s))"%(sel(),R), "{{worker}}")],
   "Worker steps (a coupled step, a G step or a D step by role)."),
  ("Table versions (updates applied)", "short", [("max by (table) (paragan_ps_table_version%s)"%sel('table=~"G|D"'), "{{table}}")],
   "G and D versions on the shards: the run's step counts."),
  ("Losses", "short", [("avg(paragan_worker_discriminator_loss%s)"%sel(), "D loss"),
                        ("avg(paragan_worker_generator_loss%s)"%sel(), "G loss")],
   "Mean over workers of each worker's latest loss."),
  ("FID (live evaluator)", "short", [("paragan_eval_fid%s"%sel(), "FID({{network}})")],
   "The evaluator's score of the shards' G_ema; lower is better. The network is part of the name: numbers from different networks are not comparable."),
  ("Workers", "short", [("max(paragan_ps_registered_workers%s)"%sel(), "registered on the shards"),
                         ("sum(up%s)"%sel('job="paragan-worker"'), "worker targets up")],
   "Workers holding a lease on the shards, and worker metrics endpoints Prometheus reaches."),
 ]),
 ("Asynchrony", [
  ("Push staleness p95 (versions behind)", "short", [("histogram_quantile(0.95, sum by (le, table) (rate(paragan_ps_staleness_bucket%s%s)))"%(sel(),R), "{{table}} p95"),
       ("histogram_quantile(0.5, sum by (le, table) (rate(paragan_ps_staleness_bucket%s%s)))"%(sel(),R), "{{table}} p50")],
   "How many versions a pushed gradient is behind the table it is applied to."),
  ("Rejected pushes per second", "ops", [("sum by (table) (rate(paragan_ps_rejected_pushes_total%s%s))"%(sel(),R), "{{table}}")],
   "Pushes refused by the staleness policy."),
  ("Generated sample age (decoupled schedule)", "short", [("sum(rate(paragan_worker_sample_age_sum%s%s)) / sum(rate(paragan_worker_sample_age_count%s%s))"%(sel(),R,sel(),R), "mean G versions behind")],
   "G versions between a fake batch's generator and the newest G, as D workers train on it."),
  ("D workers waiting for fakes", "percentunit", [("sum by (worker) (rate(paragan_worker_fake_wait_seconds_total%s%s))"%(sel(),R), "{{worker}}")],
   "Fraction of wall time each D worker waited for the sample buffer."),
 ]),
 ("Parameter servers", [
  ("Gradient and weight traffic", "Bps", [("sum by (table) (rate(paragan_ps_push_bytes_total%s%s))"%(sel(),R), "push {{table}}"),
       ("sum by (table) (rate(paragan_ps_pull_bytes_total%s%s))"%(sel(),R), "pull {{table}}")],
   "Bytes per second into and out of the shards."),
  ("Shard time applying updates", "percentunit", [("sum by (shard) (rate(paragan_ps_apply_seconds_total%s%s))"%(sel(),R), "shard {{shard}}")],
   "Seconds per second each shard spends applying optimizer updates: near 1 (per apply thread) means the shard is the bottleneck."),
  ("Push latency p95 (worker side)", "s", [("histogram_quantile(0.95, sum by (le, table) (rate(paragan_worker_push_latency_seconds_bucket%s%s)))"%(sel(),R), "push {{table}}"),
       ("histogram_quantile(0.95, sum by (le, table) (rate(paragan_worker_pull_latency_seconds_bucket%s%s)))"%(sel(),R), "pull {{table}}")],
   "Round trip of a push and of a pull as the workers see it."),
  ("Checkpoint age", "s", [("time() - max by (shard) (paragan_ps_last_checkpoint_timestamp_seconds%s)"%sel(), "shard {{shard}}")],
   "Seconds since each shard's last written checkpoint (failures do not reset it)."),
 ]),
 ("Data service", [
  ("Data bytes: wire vs decoded", "Bps", [("sum(rate(paragan_data_bytes_sent_total%s%s))"%(sel(),R), "on the wire"),
       ("sum(rate(paragan_data_decoded_bytes_sent_total%s%s))"%(sel(),R), "decoded")],
   "Bytes the data service sends, and what they decode to on the workers (compact wire and compression)."),
  ("Worker stall on data", "percentunit", [("sum by (worker) (rate(paragan_data_worker_stall_seconds_total%s%s))"%(sel(),R), "{{worker}}")],
   "Fraction of wall time each worker waited for a batch."),
  ("Delivery latency p95", "s", [("histogram_quantile(0.95, sum by (le, worker) (rate(paragan_data_delivery_latency_seconds_bucket%s%s)))"%(sel(),R), "{{worker}}")],
   "Send to acknowledgement of a batch, per worker link."),
  ("Link bandwidth estimate and queueing delay", "short", [("sum by (worker) (paragan_data_link_bandwidth_bytes_per_second%s)"%sel(), "{{worker}} bytes/s"),
       ("sum by (worker) (paragan_data_link_queueing_delay_seconds%s)"%sel(), "{{worker}} queueing s")],
   "The congestion controller's view of each link (paragan_data --dispatch_policy=congestion_aware; empty with round_robin, the default)."),
 ]),
 ("Processes", [
  ("Resident memory", "bytes", [("sum by (process) (paragan_process_resident_memory_bytes%s)"%sel(), "{{process}}")],
   "Each process's resident set."),
  ("Targets up", "short", [("sum by (job) (up%s)"%sel(), "{{job}}")],
   "Metrics endpoints Prometheus reaches, by service."),
 ]),
]
panels=[]; pid=1; y=0
for title, ps in rows:
    panels.append({"type":"row","title":title,"id":pid,"collapsed":False,
                   "gridPos":{"h":1,"w":24,"x":0,"y":y},"panels":[]})
    pid+=1; y+=1
    for i,(t,unit,targets,desc) in enumerate(ps):
        panels.append({
          "type":"timeseries","title":t,"description":desc,"id":pid,
          "datasource":{"type":"prometheus","uid":"${datasource}"},
          "gridPos":{"h":8,"w":12,"x":12*(i%2),"y":y+8*(i//2)},
          "fieldConfig":{"defaults":{"unit":unit},"overrides":[]},
          "options":{"legend":{"displayMode":"list","placement":"bottom","showLegend":True},
                     "tooltip":{"mode":"multi","sort":"none"}},
          "targets":[{"refId":chr(65+k),"expr":e,"legendFormat":l,
                      "datasource":{"type":"prometheus","uid":"${datasource}"}}
                     for k,(e,l) in enumerate(targets)]})
        pid+=1
    y+=8*((len(ps)+1)//2)
dash={
 "uid":"paragan-training","title":"ParaGAN training","tags":["paragan"],
 "description":"One ParaGAN job: throughput, quality, asynchrony, parameter servers, data service. Works for local runs (paragan_local writes prometheus.yml) and Kubernetes (deploy/k8s).",
 "editable":True,"graphTooltip":1,"refresh":"10s","schemaVersion":39,"version":1,
 "time":{"from":"now-1h","to":"now"},"timezone":"utc",
 "templating":{"list":[
   {"name":"datasource","label":"Prometheus","type":"datasource","query":"prometheus","current":{},"hide":0},
   {"name":"namespace","label":"Namespace","type":"query","datasource":{"type":"prometheus","uid":"${datasource}"},
    "query":{"query":'label_values(up{job=~"paragan-.*"}, namespace)',"refId":"namespace"},
    "definition":'label_values(up{job=~"paragan-.*"}, namespace)',
    "refresh":2,"includeAll":True,"multi":True,"allValue":".*","current":{},"sort":1,"hide":0},
   {"name":"job","label":"ParaGAN job","type":"query","datasource":{"type":"prometheus","uid":"${datasource}"},
    "query":{"query":'label_values(up{job=~"paragan-.*",namespace=~"$namespace"}, paragan_job)',"refId":"job"},
    "definition":'label_values(up{job=~"paragan-.*",namespace=~"$namespace"}, paragan_job)',
    "refresh":2,"includeAll":True,"multi":False,"allValue":".*","current":{},"sort":1,"hide":0},
 ]},
 "annotations":{"list":[]},
 "panels":panels,
}
import sys
out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "paragan-dashboard.json")
with open(out, "w") as f:
    f.write(json.dumps(dash, indent=2) + "\n")
print("%s: %d panels, %d queries" % (out, len([p for p in panels if p["type"] != "row"]),
      sum(len(p.get("targets", [])) for p in panels)))

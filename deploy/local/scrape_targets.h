#ifndef PARAGAN_DEPLOY_LOCAL_SCRAPE_TARGETS_H_
#define PARAGAN_DEPLOY_LOCAL_SCRAPE_TARGETS_H_

// What a Prometheus beside a local run scrapes. The launcher keeps
// <out_dir>/prometheus_targets.json (Prometheus' file service discovery)
// current as processes come up, and writes <out_dir>/prometheus.yml that
// reads it, so
//   prometheus --config.file=<out_dir>/prometheus.yml
// scrapes every shard, the data service, every worker and the evaluator.
// Targets carry the labels the Kubernetes manifests give (job, namespace,
// paragan_job, process), so the Grafana dashboard reads either.

#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "deploy/local/job.h"

namespace paragan {
namespace local {

inline constexpr char kPrometheusTargetsFile[] = "prometheus_targets.json";
inline constexpr char kPrometheusConfigFile[] = "prometheus.yml";
// The `namespace` label of a local run (a cluster's is its namespace).
inline constexpr char kLocalNamespace[] = "local";

struct ScrapeTarget {
  std::string process;  // "shard0", "data", "w1", "eval"
  Role role = Role::kWorker;
  std::string address;  // "127.0.0.1:<metrics port>"
};

// The Prometheus job of a role's metrics: paragan-ps, paragan-data,
// paragan-worker, paragan-eval; "" for the one-shot tasks (no metrics).
std::string ScrapeJobName(Role role);

// The `paragan_job` label: the run directory's last component ("local"
// for runs/local), as the manifests' job name.
std::string ParaganJobName(absl::string_view out_dir);

// The job's services whose "metrics" port is known, in job order.
// `metrics_address(process)` fails while a port is not known yet.
std::vector<ScrapeTarget> KnownTargets(
    const Job& job,
    const std::function<absl::StatusOr<std::string>(const std::string&)>&
        metrics_address);

// File service discovery JSON: one target group per process.
std::string FileSdJson(const std::vector<ScrapeTarget>& targets,
                       absl::string_view paragan_job);

// prometheus.yml that scrapes the targets in `targets_file` (a path
// relative to the config's own directory) every `interval_s` seconds.
std::string PrometheusConfig(absl::string_view targets_file, int interval_s);

// Keeps <out_dir>'s two files current; rewrites the targets only when
// they change (atomically: Prometheus never reads half a file).
class ScrapeTargetsWriter {
 public:
  ScrapeTargetsWriter(std::string out_dir, int interval_s = 5);
  // Writes prometheus.yml and the targets known so far.
  absl::Status Update(const std::vector<ScrapeTarget>& targets);

 private:
  std::string out_dir_;
  std::string paragan_job_;
  int interval_s_;
  bool wrote_config_ = false;
  std::string last_targets_;
};

}  // namespace local
}  // namespace paragan

#endif  // PARAGAN_DEPLOY_LOCAL_SCRAPE_TARGETS_H_

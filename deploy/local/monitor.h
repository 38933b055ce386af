#ifndef PARAGAN_DEPLOY_LOCAL_MONITOR_H_
#define PARAGAN_DEPLOY_LOCAL_MONITOR_H_

// The run's progress, read from the services' own state: the shards'
// GetState (table versions, rejected pushes, registered workers) and the
// workers' Prometheus /metrics pages (steps, images, losses, D logits,
// staleness histograms, rejected pushes). Nothing is read from the
// processes' output, so the same monitor works against pods.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/tls.h"

namespace paragan {

class ParameterServerClient;

namespace local {

// What the shards report (GetState): the minimum over shards of each table's
// version (every shard steps once per applied push, so they agree up to
// pushes in flight) and the rejected pushes summed over shards and tables.
struct ShardTotals {
  int64_t g_version = 0;
  int64_t d_version = 0;
  int64_t rejected = 0;
  int registered_workers = 0;  // on shard 0's G table
  // Real batches D trained on: D pushes accepted, less those still pending
  // in a synchronous round (minimum over shards). Async: the D version.
  int64_t d_batches = 0;
};

// One worker's progress at one time.
struct WorkerProgress {
  std::string worker;
  std::string role = "both";             // both | g_only | d_only
  int64_t step = 0;                      // steps of its role done
  double steps_s = 0;                    // since the last reading
  int64_t d_version = 0, g_version = 0;  // its view; 0 when unknown
  double img_s = 0;                      // real images/s since the last reading
  double d_loss = 0, g_loss = 0, d_real = 0, d_fake = 0;
  double staleness_d = 0, staleness_g = 0;  // mean since the last reading
  int64_t rejected = 0;
  // The decoupled roles: G's view of the sample buffer's fill (-1: none);
  // D's mean sample age since the last reading, stalls and skips so far.
  int64_t buffered = -1;
  double sample_age = 0;
  int64_t stalls = 0, skipped = 0;
};

// The live evaluator's latest result (paragan_eval's /metrics page,
// worker/eval/live_eval.h).
struct EvalReading {
  std::string network;  // the paragan_eval_fid series' network label
  double fid = 0, kid = 0, is = 0;
  int64_t g_version = 0;
  int64_t rounds = 0, errors = 0;
};
// NotFound until the page has a paragan_eval_fid series (no round done).
absl::StatusOr<EvalReading> EvalReadingFromMetrics(absl::string_view text);

// The latest progress of every worker and their states, folded into one
// line a newcomer can read.
class ProgressAggregator {
 public:
  void Update(const WorkerProgress& p);
  // "running" until told otherwise, e.g. "exited 1", "killed by signal 9".
  void SetState(const std::string& worker, const std::string& state);

  struct Totals {
    int64_t worker_steps = 0;  // sum of the workers' own step counts
    int64_t g_version = 0;     // max over workers' views
    int64_t d_version = 0;
    double img_s = 0;  // sum of running workers' latest rates
    double d_loss = 0, g_loss = 0, d_real = 0, d_fake = 0;  // mean
    double staleness_d = 0, staleness_g = 0;                // mean
    int64_t rejected = 0;                                   // sum
    int workers_reporting = 0;  // not counting those that left
    int workers_left = 0;       // scaled away (state "left")
    // The decoupled schedule (any g_only or d_only worker reporting): the
    // running roles' summed step rates, the buffer's fill (latest G
    // report's maximum), D's mean sample age, stalls and skips (sums).
    bool decoupled = false;
    double g_steps_s = 0, d_steps_s = 0;
    int64_t buffered = -1;
    double sample_age = 0;
    int64_t stalls = 0, skipped = 0;
    std::map<std::string, std::string> worker_role;
    std::map<std::string, double> worker_steps_s;  // latest, running ones
    // Per worker: latest img/s and state, by worker id.
    std::map<std::string, double> worker_img_s;
    std::map<std::string, std::string> worker_state;
  };
  Totals Compute() const;

  // E.g. "[  1m05s] G step 1234 | D/G versions 1234/1234 | 410 img/s total
  // (w0 205, w1 205) | losses D 1.234 G 0.876 | staleness D 0.9 G 0.8 |
  // rejected 0". `shards`, when given, supplies the versions and rejected
  // counts (the servers' truth); otherwise the workers' views are used.
  // `eval`, when given, appends "| FID(fmnist-cnn) 45.21 @G 1200".
  static std::string FormatLine(
      double elapsed_s, const Totals& totals,
      const std::optional<ShardTotals>& shards,
      const std::optional<EvalReading>& eval = std::nullopt);

 private:
  std::map<std::string, WorkerProgress> latest_;
  std::map<std::string, std::string> state_;
};

// The counters of one worker's /metrics page (worker/distributed/
// worker_metrics.h), series labelled worker="<id>".
struct WorkerCounters {
  std::string role = "both";  // paragan_worker_info's role label
  double images = 0;          // paragan_worker_images_total
  double steps = 0;           // paragan_worker_steps_total
  double d_loss = 0, g_loss = 0;
  double d_real = 0, d_fake = 0;  // 0 from a worker without the gauges
  // paragan_worker_staleness{table} histograms: _sum and _count.
  double staleness_sum_d = 0, staleness_count_d = 0;
  double staleness_sum_g = 0, staleness_count_g = 0;
  double rejected = 0;   // paragan_worker_rejected_pushes_total
  double buffered = -1;  // paragan_worker_sample_buffer_batches (g_only)
  // paragan_worker_sample_age _sum and _count, stalls, skips (d_only).
  double sample_age_sum = 0, sample_age_count = 0;
  double stalls = 0, skipped = 0;
};
// NotFound when the page has no paragan_worker_steps_total for `worker`.
absl::StatusOr<WorkerCounters> WorkerCountersFromMetrics(
    absl::string_view text, const std::string& worker);

// The progress of `worker` at reading `cur`, `dt_s` after reading `prev`
// (null: the first). Rates and staleness means are over that interval;
// where it says nothing new (too short, no push), `last`'s stay.
WorkerProgress ProgressBetween(const std::string& worker,
                               const WorkerCounters* prev,
                               const WorkerCounters& cur, double dt_s,
                               const WorkerProgress* last);

// One data link as the data service's /metrics page shows it
// (dataloader/data_metrics.h, series labelled worker="<stream's worker>").
struct LinkReading {
  double stall_s = 0;        // paragan_data_worker_stall_seconds_total
  double wire_bytes = 0;     // paragan_data_bytes_sent_total
  double decoded_bytes = 0;  // paragan_data_decoded_bytes_sent_total
  // The policy's estimates (congestion_aware publishes them; round_robin
  // does not).
  std::optional<double> bandwidth, rtt_s, queueing_s, window, compression;
};
// Every link of the page, by worker label.
absl::StatusOr<std::map<std::string, LinkReading>> LinkReadingsFromMetrics(
    absl::string_view text);

// A line for each link whose worker waited for data more than `min_stall`
// (a share) of the `dt_s` between two readings, e.g. "data link w1:
// stalled 35% | 1.52 MB/s on the wire (x8.9) | est. 2.50 MB/s, rtt 110 ms
// (95 queued), window 12, zstd". Links in `prev` only are gone; in `cur`
// only are new (no interval yet): neither gets a line.
std::vector<std::string> CongestedLinkLines(
    const std::map<std::string, LinkReading>& prev,
    const std::map<std::string, LinkReading>& cur, double dt_s,
    double min_stall = 0.05);

// GET http://<address><path> (HTTP/1.0); the body of a 200 answer.
absl::StatusOr<std::string> HttpGet(const std::string& address,
                                    const std::string& path,
                                    absl::Duration timeout);

// Readiness probes (ProcessGroup::Probe): the shard at `address` answers
// GetState; the /metrics page at `address` answers.
bool ShardAnswers(const std::string& address,
                  const ClientSecurity& security = {});
bool MetricsAnswer(const std::string& address);

class Monitor {
 public:
  Monitor();
  ~Monitor();

  // Clients of the shards (host:port, index = shard id), for GetState.
  void ConnectShards(const std::vector<std::string>& targets,
                     absl::Duration rpc_timeout,
                     const ClientSecurity& security = {});
  // Every shard's GetState folded; nullopt when one does not answer. The
  // last good answer stays in last_shards().
  std::optional<ShardTotals> QueryShards();
  const std::optional<ShardTotals>& last_shards() const { return last_shards_; }

  void SetWorkerState(const std::string& worker, const std::string& state);
  // Reads the /metrics page of each of `workers` whose address (host:port)
  // `address` knows; one that does not answer keeps its last reading.
  // `only_unread`: just those not read yet (their first reading is the
  // start of their first rate, taken as soon as they are up).
  void ScrapeWorkers(
      const std::vector<std::string>& workers,
      const std::function<absl::StatusOr<std::string>(const std::string&)>&
          address,
      bool only_unread = false);
  ProgressAggregator::Totals Totals() const { return progress_.Compute(); }

  // Reads the live evaluator's page at `address` (host:port); a failed
  // read keeps the last reading.
  void ScrapeEval(const std::string& address);
  const std::optional<EvalReading>& last_eval() const { return last_eval_; }

  // Reads the data service's page at `address`; the congested links since
  // the previous read (CongestedLinkLines), none on a failed read.
  std::vector<std::string> ScrapeDataLinks(const std::string& address);

 private:
  struct Reading {
    WorkerCounters counters;
    absl::Time at;
  };
  std::vector<std::unique_ptr<ParameterServerClient>> clients_;
  std::optional<ShardTotals> last_shards_;
  std::optional<EvalReading> last_eval_;
  std::map<std::string, LinkReading> links_;
  absl::Time links_at_ = absl::InfinitePast();
  std::map<std::string, Reading> readings_;
  std::map<std::string, WorkerProgress> progress_by_worker_;
  std::set<std::string> reporting_;  // on the progress line
  ProgressAggregator progress_;
};

}  // namespace local
}  // namespace paragan

#endif  // PARAGAN_DEPLOY_LOCAL_MONITOR_H_

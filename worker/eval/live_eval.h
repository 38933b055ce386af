#ifndef PARAGAN_WORKER_EVAL_LIVE_EVAL_H_
#define PARAGAN_WORKER_EVAL_LIVE_EVAL_H_

// The live evaluator: every `every_s` seconds, pulls the EMA generator from
// the running parameter servers, generates samples, scores them and records
// the row (fid.csv, fid.png, Prometheus gauges, a line on stdout). Runs as
// its own process beside the workers (paragan_eval --ps=... --every_s=...,
// started by the local launcher), so it is off the workers' critical path;
// it lowers its own CPU priority so that on a shared box training keeps the
// cores it had.

#include <atomic>
#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/tls.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"
#include "worker/eval/background_priority.h"
#include "worker/eval/evaluate.h"
#include "worker/eval/feature_network.h"
#include "worker/eval/fid_log.h"

namespace paragan::eval {

struct LiveEvalOptions {
  std::vector<std::string> ps;  // every shard's "host:port"
  ClientSecurity security;      // the shards' token and TLS (common/tls.h)
  std::string model = "dcgan32";
  int64_t num_samples = 10000;
  double every_s = 60;  // between the starts of two evaluations
  uint64_t seed = 1;    // the samples' z (the same z every round)
  int threads = 1;
  // Each round's thread priority, and when a starved round escalates to
  // nice 19 (RoundPriority; 0: never).
  BackgroundPriority priority = BackgroundPriority::kNormal;
  double escalate_after_s = 0;
  EvalOptions eval;
};

// Gauges paragan_eval_{fid,kid,is}{network=...}, paragan_eval_g_version,
// paragan_eval_seconds, paragan_eval_samples and counters
// paragan_eval_rounds_total / paragan_eval_errors_total.
class LiveEvalMetrics {
 public:
  LiveEvalMetrics(prometheus::Registry* registry, const std::string& network);
  void Record(const FidRow& row);
  void RecordError();

 private:
  prometheus::Gauge &fid_, &kid_, &is_, &g_version_, &seconds_, &samples_;
  prometheus::Counter &rounds_, &errors_;
};

class LiveEvaluator {
 public:
  // `net`, `ref`, `log` and `metrics` (may be null) must outlive it.
  LiveEvaluator(LiveEvalOptions options, FeatureNetwork* net,
                const Reference* ref, FidLog* log, LiveEvalMetrics* metrics,
                std::ostream* out);

  // One round now: pull, generate, score, record. `wall_s` is the row's
  // time (seconds since Run started, or the caller's clock).
  absl::StatusOr<FidRow> EvaluateOnce(double wall_s);

  // Rounds every every_s until *stop; a failed round (e.g. the shards are
  // restarting) is logged, counted and retried at the next tick.
  void Run(const std::atomic<bool>* stop);

 private:
  LiveEvalOptions o_;
  FeatureNetwork* net_;
  const Reference* ref_;
  FidLog* log_;
  LiveEvalMetrics* metrics_;
  std::ostream* out_;
};

}  // namespace paragan::eval

#endif  // PARAGAN_WORKER_EVAL_LIVE_EVAL_H_

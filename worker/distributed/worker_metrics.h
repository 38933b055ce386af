#ifndef PARAGAN_WORKER_DISTRIBUTED_WORKER_METRICS_H_
#define PARAGAN_WORKER_DISTRIBUTED_WORKER_METRICS_H_

// Prometheus metrics of one worker (prometheus-cpp), every series labelled
// worker="<id>":
//   paragan_worker_info{role} (1; role both, g_only, d_only or auto)
//   paragan_worker_role{role} (1 for the role running now, 0 for the others)
//   paragan_worker_images_total, paragan_worker_steps_total (G steps)
//   paragan_worker_discriminator_loss, paragan_worker_generator_loss
//     (gauges, last step)
//   paragan_worker_discriminator_real_logit,
//   paragan_worker_discriminator_fake_logit (gauges: mean D logit on the
//     real and the fake half of the last reported D step)
//   paragan_worker_pushes_total{table}, paragan_worker_pulls_total{table}
//   paragan_worker_push_bytes_total{table},
//   paragan_worker_pull_bytes_total{table}
//   paragan_worker_push_latency_seconds{table},
//   paragan_worker_pull_latency_seconds{table} (histograms, per shard call)
//   paragan_worker_staleness{table} (histogram of PushResponse.staleness)
//   paragan_worker_rejected_pushes_total, paragan_worker_retries_total
// and the decoupled roles' (worker.h):
//   paragan_worker_samples_published_total,
//   paragan_worker_sample_buffer_batches,
//   paragan_worker_wait_for_discriminator_seconds_total (g_only)
//   paragan_worker_sample_age (histogram), paragan_worker_fake_stalls_total,
//   paragan_worker_fake_wait_seconds_total,
//   paragan_worker_fakes_skipped_total (d_only)
// Process memory comes from common/process_metrics.h.

#include <cstdint>
#include <string>

#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace paragan {

class WorkerMetrics {
 public:
  // Registers the families on `registry`, which must outlive this object.
  // `role`: "both", "g_only" or "d_only" (paragan_worker_info).
  WorkerMetrics(prometheus::Registry* registry, const std::string& worker_id,
                const std::string& role = "both");

  void RecordStep(int64_t images, double d_loss, double g_loss);
  void RecordLogits(double d_real, double d_fake);
  void RecordPull(const std::string& table, int64_t bytes, double seconds);
  void RecordPush(const std::string& table, int64_t bytes, double seconds,
                  bool accepted, int64_t staleness);
  void RecordRetry();
  void RecordPublished(int64_t batches, int64_t buffered);
  void RecordGateWait(double seconds);
  void RecordSampleAge(int64_t age);
  void RecordFakeWait(double seconds, bool stalled);
  void RecordFakeSkipped();
  // "both", "g_only" or "d_only".
  void SetCurrentRole(const std::string& role);

 private:
  prometheus::Labels L(const std::string& table) const;

  std::string worker_;
  prometheus::Counter& images_;
  prometheus::Counter& steps_;
  prometheus::Gauge& d_loss_;
  prometheus::Gauge& g_loss_;
  prometheus::Gauge& d_real_;
  prometheus::Gauge& d_fake_;
  prometheus::Family<prometheus::Counter>& pushes_;
  prometheus::Family<prometheus::Counter>& pulls_;
  prometheus::Family<prometheus::Counter>& push_bytes_;
  prometheus::Family<prometheus::Counter>& pull_bytes_;
  prometheus::Family<prometheus::Histogram>& push_latency_;
  prometheus::Family<prometheus::Histogram>& pull_latency_;
  prometheus::Family<prometheus::Histogram>& staleness_;
  prometheus::Counter& rejected_;
  prometheus::Counter& retries_;
  prometheus::Counter& published_;
  prometheus::Gauge& buffered_;
  prometheus::Counter& gate_wait_;
  prometheus::Histogram& sample_age_;
  prometheus::Counter& stalls_;
  prometheus::Counter& fake_wait_;
  prometheus::Counter& skipped_;
  prometheus::Family<prometheus::Gauge>& current_role_;
};

}  // namespace paragan

#endif  // PARAGAN_WORKER_DISTRIBUTED_WORKER_METRICS_H_

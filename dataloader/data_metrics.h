#ifndef PARAGAN_DATALOADER_DATA_METRICS_H_
#define PARAGAN_DATALOADER_DATA_METRICS_H_

// Prometheus metrics of the data service (prometheus-cpp):
//   paragan_data_batches_sent_total{worker}
//   paragan_data_bytes_sent_total{worker}        (image + label bytes on the
//                                                 wire: dtype and compression
//                                                 applied)
//   paragan_data_decoded_bytes_sent_total{worker} (what those decode to at the
//                                                 worker: float32 images +
//                                                 labels; / bytes_sent is the
//                                                 wire's saving)
//   paragan_data_encode_seconds_total{worker}    (widening + compressing)
//   paragan_data_budget_wait_seconds_total{worker} (batches held back by
//                                                 --max_mbit_per_s or
//                                                 --link_max_mbit_per_s)
//   paragan_data_worker_stall_seconds_total{worker}  (reported by the worker:
//                                                 waited with no batch ready)
//   paragan_data_worker_decode_seconds_total{worker} (reported: decompressing
//                                                 and decoding)
//   The policy's estimate of each open link (gauges, removed when it closes;
//   only policies that estimate, e.g. congestion_aware):
//   paragan_data_link_bandwidth_bytes_per_second{worker}
//   paragan_data_link_rtt_seconds{worker}        (smoothed send -> receipt)
//   paragan_data_link_min_rtt_seconds{worker}
//   paragan_data_link_queueing_delay_seconds{worker} (rtt over the link's
//                                                 base: its queue)
//   paragan_data_link_window_batches{worker}     (unacked batches allowed)
//   paragan_data_link_compression_level{worker}  (0 none, 1 lz4, 2+ zstd
//                                                 levels; see
//                                                 congestion_aware_policy.h)
//   paragan_data_delivery_latency_seconds{worker} (histogram: send -> ack)
//   paragan_data_credit_wait_seconds{worker}     (histogram: credit granted ->
//                                                 batch sent, i.e. how long a
//                                                 ready worker waited for data)
//   paragan_data_in_flight_batches               (gauge: sent, not acked)
//   paragan_data_prepared_batches                (gauge: decoded, not sent)
//   paragan_data_requeued_batches_total          (broken streams' batches)
//   paragan_data_generated_batches_accepted_total
//   paragan_data_generated_batches_dropped_total (buffer full: oldest dropped)
//   paragan_data_generated_batches_stale_total   (older than a D stream's
//                                                 max_sample_age: skipped)
//   paragan_data_epoch                           (gauge: of the last real batch
//                                                 dealt)
//   paragan_data_streams                         (gauge: open batch streams)
// Process memory comes from server/metrics.h's MakeProcessCollectable.

#include <cstdint>
#include <string>

#include "dataloader/dispatch_policy.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace paragan {

class DataMetrics {
 public:
  // Registers the families on `registry`, which must outlive this object.
  explicit DataMetrics(prometheus::Registry* registry);

  void RecordSent(const std::string& worker, int64_t wire_bytes,
                  int64_t decoded_bytes, double credit_wait_seconds,
                  double encode_seconds);
  void AddBudgetWait(const std::string& worker, double seconds);
  void RecordClientReport(const std::string& worker, double stall_seconds,
                          double decode_seconds);
  void SetLink(const std::string& worker, const LinkEstimate& estimate);
  void RemoveLink(const std::string& worker);
  void RecordAcked(const std::string& worker, double latency_seconds);
  void SetInFlight(int64_t n) { in_flight_.Set(static_cast<double>(n)); }
  void SetPrepared(int64_t n) { prepared_.Set(static_cast<double>(n)); }
  void SetStreams(int64_t n) { streams_.Set(static_cast<double>(n)); }
  // A client refused for breaking `limit` ("streams").
  void RecordLimitHit(const std::string& limit);
  void SetEpoch(int64_t epoch) { epoch_.Set(static_cast<double>(epoch)); }
  void AddRequeued(int64_t n) { requeued_.Increment(static_cast<double>(n)); }
  void AddGenerated(int64_t accepted, int64_t dropped);
  void AddGeneratedStale(int64_t n) {
    generated_stale_.Increment(static_cast<double>(n));
  }

 private:
  prometheus::Family<prometheus::Counter>& batches_sent_;
  prometheus::Family<prometheus::Counter>& bytes_sent_;
  prometheus::Family<prometheus::Counter>& decoded_bytes_sent_;
  prometheus::Family<prometheus::Counter>& encode_seconds_;
  prometheus::Family<prometheus::Counter>& budget_wait_seconds_;
  prometheus::Family<prometheus::Counter>& stall_seconds_;
  prometheus::Family<prometheus::Counter>& decode_seconds_;
  prometheus::Family<prometheus::Gauge>& link_bandwidth_;
  prometheus::Family<prometheus::Gauge>& link_rtt_;
  prometheus::Family<prometheus::Gauge>& link_min_rtt_;
  prometheus::Family<prometheus::Gauge>& link_queueing_;
  prometheus::Family<prometheus::Gauge>& link_window_;
  prometheus::Family<prometheus::Gauge>& link_compression_;
  prometheus::Family<prometheus::Histogram>& latency_;
  prometheus::Family<prometheus::Histogram>& credit_wait_;
  prometheus::Gauge& in_flight_;
  prometheus::Gauge& prepared_;
  prometheus::Gauge& streams_;
  prometheus::Gauge& epoch_;
  prometheus::Counter& requeued_;
  prometheus::Counter& generated_accepted_;
  prometheus::Counter& generated_dropped_;
  prometheus::Counter& generated_stale_;
  prometheus::Family<prometheus::Counter>& limit_hits_;
};

}  // namespace paragan

#endif  // PARAGAN_DATALOADER_DATA_METRICS_H_

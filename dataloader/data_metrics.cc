#include "dataloader/data_metrics.h"

namespace paragan {
namespace {

// Delivery happens within milliseconds on a LAN and can take seconds when a
// worker is slow to consume: 100 us .. ~100 s.
const prometheus::Histogram::BucketBoundaries& LatencyBuckets() {
  static const auto* buckets = new prometheus::Histogram::BucketBoundaries{
      1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30, 100};
  return *buckets;
}

prometheus::Gauge& SingleGauge(prometheus::Registry* registry,
                               const std::string& name,
                               const std::string& help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(*registry).Add(
      {});
}

prometheus::Counter& SingleCounter(prometheus::Registry* registry,
                                   const std::string& name,
                                   const std::string& help) {
  return prometheus::BuildCounter()
      .Name(name)
      .Help(help)
      .Register(*registry)
      .Add({});
}

}  // namespace

DataMetrics::DataMetrics(prometheus::Registry* registry)
    : batches_sent_(prometheus::BuildCounter()
                        .Name("paragan_data_batches_sent_total")
                        .Help("Batches sent, per worker")
                        .Register(*registry)),
      bytes_sent_(prometheus::BuildCounter()
                      .Name("paragan_data_bytes_sent_total")
                      .Help("Image and label payload bytes sent, per worker")
                      .Register(*registry)),
      latency_(prometheus::BuildHistogram()
                   .Name("paragan_data_delivery_latency_seconds")
                   .Help("Seconds from sending a batch to its ack")
                   .Register(*registry)),
      credit_wait_(prometheus::BuildHistogram()
                       .Name("paragan_data_credit_wait_seconds")
                       .Help("Seconds a granted credit waited for a batch")
                       .Register(*registry)),
      in_flight_(SingleGauge(registry, "paragan_data_in_flight_batches",
                             "Batches sent (or being sent) and not acked")),
      prepared_(SingleGauge(registry, "paragan_data_prepared_batches",
                            "Batches decoded ahead and not yet dealt")),
      streams_(SingleGauge(registry, "paragan_data_streams",
                           "Open StreamBatches streams")),
      epoch_(SingleGauge(registry, "paragan_data_epoch",
                         "Epoch of the last real batch dealt")),
      requeued_(SingleCounter(registry, "paragan_data_requeued_batches_total",
                              "Unacked batches of broken streams re-queued")),
      generated_accepted_(SingleCounter(
          registry, "paragan_data_generated_batches_accepted_total",
          "Generated batches accepted from G workers")),
      generated_dropped_(SingleCounter(
          registry, "paragan_data_generated_batches_dropped_total",
          "Generated batches dropped (buffer full, oldest first)")),
      generated_stale_(
          SingleCounter(registry, "paragan_data_generated_batches_stale_total",
                        "Generated batches skipped: older than a D stream's "
                        "max_sample_age")) {}

void DataMetrics::RecordSent(const std::string& worker, int64_t bytes,
                             double credit_wait_seconds) {
  batches_sent_.Add({{"worker", worker}}).Increment();
  bytes_sent_.Add({{"worker", worker}}).Increment(static_cast<double>(bytes));
  credit_wait_.Add({{"worker", worker}}, LatencyBuckets())
      .Observe(credit_wait_seconds);
}

void DataMetrics::RecordAcked(const std::string& worker,
                              double latency_seconds) {
  latency_.Add({{"worker", worker}}, LatencyBuckets()).Observe(latency_seconds);
}

void DataMetrics::AddGenerated(int64_t accepted, int64_t dropped) {
  generated_accepted_.Increment(static_cast<double>(accepted));
  generated_dropped_.Increment(static_cast<double>(dropped));
}

}  // namespace paragan

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

prometheus::Family<prometheus::Counter>& CounterFamily(
    prometheus::Registry* registry, const std::string& name,
    const std::string& help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(*registry);
}

prometheus::Family<prometheus::Gauge>& GaugeFamily(
    prometheus::Registry* registry, const std::string& name,
    const std::string& help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(*registry);
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
      bytes_sent_(CounterFamily(
          registry, "paragan_data_bytes_sent_total",
          "Image and label bytes sent on the wire (encoded), per worker")),
      decoded_bytes_sent_(CounterFamily(
          registry, "paragan_data_decoded_bytes_sent_total",
          "What the bytes sent decode to at the worker (float32 images and "
          "labels), per worker")),
      encode_seconds_(CounterFamily(
          registry, "paragan_data_encode_seconds_total",
          "Seconds spent widening and compressing batches, per worker")),
      budget_wait_seconds_(CounterFamily(
          registry, "paragan_data_budget_wait_seconds_total",
          "Seconds batches were held back by the data byte budget "
          "(--max_mbit_per_s, --link_max_mbit_per_s), per worker")),
      stall_seconds_(CounterFamily(
          registry, "paragan_data_worker_stall_seconds_total",
          "Seconds a worker reported waiting with no batch ready")),
      decode_seconds_(CounterFamily(
          registry, "paragan_data_worker_decode_seconds_total",
          "Seconds a worker reported decompressing and decoding batches")),
      link_bandwidth_(GaugeFamily(
          registry, "paragan_data_link_bandwidth_bytes_per_second",
          "Estimated delivery rate of the link to a worker (windowed max)")),
      link_rtt_(GaugeFamily(registry, "paragan_data_link_rtt_seconds",
                            "Smoothed seconds from sending a batch to the "
                            "worker's receipt")),
      link_min_rtt_(GaugeFamily(registry, "paragan_data_link_min_rtt_seconds",
                                "Smallest recent send -> receipt seconds")),
      link_queueing_(GaugeFamily(
          registry, "paragan_data_link_queueing_delay_seconds",
          "Round trip over the link's base: time batches spend queued")),
      link_window_(GaugeFamily(registry, "paragan_data_link_window_batches",
                               "Batches a link may hold unacked (the "
                               "policy's window)")),
      link_compression_(GaugeFamily(
          registry, "paragan_data_link_compression_level",
          "Compression rung used on the link: 0 none, 1 lz4, 2+ zstd")),
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
                        "max_sample_age")),
      limit_hits_(prometheus::BuildCounter()
                      .Name("paragan_data_limit_refusals_total")
                      .Help("Clients refused for breaking a bound "
                            "(--max_streams), by limit")
                      .Register(*registry)) {}

void DataMetrics::RecordLimitHit(const std::string& limit) {
  limit_hits_.Add({{"limit", limit}}).Increment();
}

void DataMetrics::RecordSent(const std::string& worker, int64_t wire_bytes,
                             int64_t decoded_bytes, double credit_wait_seconds,
                             double encode_seconds) {
  batches_sent_.Add({{"worker", worker}}).Increment();
  bytes_sent_.Add({{"worker", worker}})
      .Increment(static_cast<double>(wire_bytes));
  decoded_bytes_sent_.Add({{"worker", worker}})
      .Increment(static_cast<double>(decoded_bytes));
  encode_seconds_.Add({{"worker", worker}}).Increment(encode_seconds);
  credit_wait_.Add({{"worker", worker}}, LatencyBuckets())
      .Observe(credit_wait_seconds);
}

void DataMetrics::AddBudgetWait(const std::string& worker, double seconds) {
  budget_wait_seconds_.Add({{"worker", worker}}).Increment(seconds);
}

void DataMetrics::RecordAcked(const std::string& worker,
                              double latency_seconds) {
  latency_.Add({{"worker", worker}}, LatencyBuckets()).Observe(latency_seconds);
}

void DataMetrics::RecordClientReport(const std::string& worker,
                                     double stall_seconds,
                                     double decode_seconds) {
  stall_seconds_.Add({{"worker", worker}}).Increment(stall_seconds);
  decode_seconds_.Add({{"worker", worker}}).Increment(decode_seconds);
}

void DataMetrics::SetLink(const std::string& worker,
                          const LinkEstimate& estimate) {
  const prometheus::Labels labels = {{"worker", worker}};
  link_bandwidth_.Add(labels).Set(estimate.bandwidth_bytes_per_second);
  link_rtt_.Add(labels).Set(absl::ToDoubleSeconds(estimate.rtt));
  link_min_rtt_.Add(labels).Set(absl::ToDoubleSeconds(estimate.min_rtt));
  link_queueing_.Add(labels).Set(
      absl::ToDoubleSeconds(estimate.queueing_delay));
  link_window_.Add(labels).Set(static_cast<double>(estimate.window));
  link_compression_.Add(labels).Set(estimate.compression_level);
}

void DataMetrics::RemoveLink(const std::string& worker) {
  const prometheus::Labels labels = {{"worker", worker}};
  for (prometheus::Family<prometheus::Gauge>* family :
       {&link_bandwidth_, &link_rtt_, &link_min_rtt_, &link_queueing_,
        &link_window_, &link_compression_}) {
    if (family->Has(labels)) family->Remove(&family->Add(labels));
  }
}

void DataMetrics::AddGenerated(int64_t accepted, int64_t dropped) {
  generated_accepted_.Increment(static_cast<double>(accepted));
  generated_dropped_.Increment(static_cast<double>(dropped));
}

}  // namespace paragan

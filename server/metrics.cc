#include "server/metrics.h"

#include <vector>

#include "server/table_names.h"

namespace paragan {
namespace {

const prometheus::Histogram::BucketBoundaries& StalenessBuckets() {
  static const auto* buckets = new prometheus::Histogram::BucketBoundaries{
      0, 1, 2, 3, 4, 6, 8, 12, 16, 32, 64};
  return *buckets;
}

}  // namespace

ServerMetrics::ServerMetrics(prometheus::Registry* registry, int shard_id)
    : shard_(std::to_string(shard_id)),
      pushes_(prometheus::BuildCounter()
                  .Name("paragan_ps_pushes_total")
                  .Help("Gradient pushes by outcome")
                  .Register(*registry)),
      pulls_(prometheus::BuildCounter()
                 .Name("paragan_ps_pulls_total")
                 .Help("Table pulls served")
                 .Register(*registry)),
      push_bytes_(prometheus::BuildCounter()
                      .Name("paragan_ps_push_bytes_total")
                      .Help("Tensor payload bytes received by pushes")
                      .Register(*registry)),
      pull_bytes_(prometheus::BuildCounter()
                      .Name("paragan_ps_pull_bytes_total")
                      .Help("Tensor payload bytes sent by pulls")
                      .Register(*registry)),
      staleness_(prometheus::BuildHistogram()
                     .Name("paragan_ps_staleness")
                     .Help("Staleness (table version minus base version) of "
                           "pushes that reached the update rule")
                     .Register(*registry)),
      rejected_(prometheus::BuildCounter()
                    .Name("paragan_ps_rejected_pushes_total")
                    .Help("Pushes refused, by reason")
                    .Register(*registry)),
      version_(prometheus::BuildGauge()
                   .Name("paragan_ps_table_version")
                   .Help("Current version of the table on this shard")
                   .Register(*registry)),
      expired_leases_(prometheus::BuildCounter()
                          .Name("paragan_ps_expired_leases_total")
                          .Help("Registered workers dropped because their "
                                "lease expired (silent for --worker_lease_s)")
                          .Register(*registry)),
      deregistered_(prometheus::BuildCounter()
                        .Name("paragan_ps_deregistered_workers_total")
                        .Help("Workers that left the job (DeregisterWorker, "
                              "e.g. on SIGTERM at a scale-down)")
                        .Register(*registry)),
      registered_workers_(prometheus::BuildGauge()
                              .Name("paragan_ps_registered_workers")
                              .Help("Workers holding a lease on the table")
                              .Register(*registry)),
      lease_rounds_(prometheus::BuildCounter()
                        .Name("paragan_ps_lease_round_completions_total")
                        .Help("Synchronous rounds completed with the "
                              "contributions they had after workers left or "
                              "their leases expired")
                        .Register(*registry)),
      data_plane_connections_(
          prometheus::BuildGauge()
              .Name("paragan_ps_data_plane_connections")
              .Help("Open connections of the tensor data plane")
              .Register(*registry)
              .Add({{"shard", std::to_string(shard_id)}})),
      limit_hits_(prometheus::BuildCounter()
                      .Name("paragan_ps_limit_refusals_total")
                      .Help("Clients refused or connections cut for breaking "
                            "a bound (--max_workers, the data plane's "
                            "connection and frame-time limits), by limit")
                      .Register(*registry)),
      apply_seconds_(prometheus::BuildCounter()
                         .Name("paragan_ps_apply_seconds_total")
                         .Help("Seconds spent applying pushes in the update "
                               "rule (Adam, EMA, staleness policy)")
                         .Register(*registry)),
      last_checkpoint_(prometheus::BuildGauge()
                           .Name("paragan_ps_last_checkpoint_timestamp_seconds")
                           .Help("Unix time of the last checkpoint written "
                                 "(the shard's start until the first)")
                           .Register(*registry)),
      checkpoint_failures_(prometheus::BuildCounter()
                               .Name("paragan_ps_checkpoint_failures_total")
                               .Help("Checkpoints that could not be written")
                               .Register(*registry)) {
  // Counters that start at 0 instead of appearing with the first event, so
  // rate() and the dashboard's panels have a series from the start.
  for (const char* table : {kGeneratorTable, kDiscriminatorTable}) {
    for (const char* reason : {"stale", "duplicate", "invalid"}) {
      prometheus::Labels r = Labels(table);
      r["reason"] = reason;
      rejected_.Add(r);
    }
    expired_leases_.Add(Labels(table));
    deregistered_.Add(Labels(table));
  }
  checkpoint_failures_.Add({{"shard", shard_}});
}

void ServerMetrics::RecordApplyTime(const std::string& table, double seconds) {
  apply_seconds_.Add(Labels(table)).Increment(seconds);
}

void ServerMetrics::RecordCheckpoint(bool ok, double unix_s) {
  if (ok) {
    last_checkpoint_.Add({{"shard", shard_}}).Set(unix_s);
  } else {
    checkpoint_failures_.Add({{"shard", shard_}}).Increment();
  }
}

void ServerMetrics::RecordLimitHit(const std::string& limit) {
  limit_hits_.Add({{"shard", shard_}, {"limit", limit}}).Increment();
}

prometheus::Labels ServerMetrics::Labels(const std::string& table) const {
  return {{"shard", shard_}, {"table", table}};
}

void ServerMetrics::RecordPull(const std::string& table, int64_t bytes) {
  pulls_.Add(Labels(table)).Increment();
  pull_bytes_.Add(Labels(table)).Increment(static_cast<double>(bytes));
}

void ServerMetrics::RecordPush(const std::string& table, int64_t bytes,
                               const PushResult& result) {
  prometheus::Labels labels = Labels(table);
  push_bytes_.Add(labels).Increment(static_cast<double>(bytes));
  staleness_.Add(labels, StalenessBuckets())
      .Observe(static_cast<double>(result.staleness));
  const char* outcome =
      result.applied ? "applied" : (result.accepted ? "pending" : "rejected");
  labels["outcome"] = outcome;
  pushes_.Add(labels).Increment();
  if (!result.accepted) {
    prometheus::Labels r = Labels(table);
    r["reason"] =
        result.reason.rfind("duplicate", 0) == 0 ? "duplicate" : "stale";
    rejected_.Add(r).Increment();
  }
}

void ServerMetrics::RecordInvalidPush(const std::string& table, int64_t bytes) {
  prometheus::Labels labels = Labels(table);
  push_bytes_.Add(labels).Increment(static_cast<double>(bytes));
  labels["outcome"] = "invalid";
  pushes_.Add(labels).Increment();
  prometheus::Labels r = Labels(table);
  r["reason"] = "invalid";
  rejected_.Add(r).Increment();
}

void ServerMetrics::SetVersion(const std::string& table, int64_t version) {
  version_.Add(Labels(table)).Set(static_cast<double>(version));
}

void ServerMetrics::RecordExpiredLeases(const std::string& table,
                                        int64_t workers, bool round_completed) {
  expired_leases_.Add(Labels(table)).Increment(static_cast<double>(workers));
  if (round_completed) lease_rounds_.Add(Labels(table)).Increment();
}

void ServerMetrics::RecordDeregistered(const std::string& table,
                                       int64_t workers, bool round_completed) {
  deregistered_.Add(Labels(table)).Increment(static_cast<double>(workers));
  if (round_completed) lease_rounds_.Add(Labels(table)).Increment();
}

void ServerMetrics::SetRegisteredWorkers(const std::string& table,
                                         int64_t workers) {
  registered_workers_.Add(Labels(table)).Set(static_cast<double>(workers));
}

void ServerMetrics::SetDataPlaneConnections(int64_t connections) {
  data_plane_connections_.Set(static_cast<double>(connections));
}

}  // namespace paragan

#ifndef PARAGAN_SERVER_METRICS_H_
#define PARAGAN_SERVER_METRICS_H_

// Prometheus metrics of a parameter-server shard (prometheus-cpp), all with
// the constant label shard="<id>" and per-table labels:
//   paragan_ps_pushes_total{table, outcome=applied|pending|rejected|invalid}
//   paragan_ps_pulls_total{table}
//   paragan_ps_push_bytes_total{table}, paragan_ps_pull_bytes_total{table}
//   paragan_ps_staleness{table} (histogram of accepted and refused pushes)
//   paragan_ps_rejected_pushes_total{table, reason=stale|duplicate|invalid}
//   paragan_ps_table_version{table} (gauge)
//   paragan_ps_expired_leases_total{table} (workers dropped for silence)
//   paragan_ps_deregistered_workers_total{table} (workers that left:
//     DeregisterWorker)
//   paragan_ps_registered_workers{table} (gauge)
//   paragan_ps_lease_round_completions_total{table} (synchronous rounds
//     completed short because their missing contributors left or their
//     leases expired)
//   paragan_ps_data_plane_connections (gauge: open data-plane connections)
//   paragan_ps_apply_seconds_total{table} (time in the update rule: Adam,
//     EMA, staleness policy; excludes receiving the push)
//   paragan_ps_last_checkpoint_timestamp_seconds (gauge: Unix time of the
//     last checkpoint written, the shard's start until the first one; only
//     with a checkpoint directory)
//   paragan_ps_checkpoint_failures_total
// (process memory: common/process_metrics.h).

#include <cstdint>
#include <memory>
#include <string>

#include "prometheus/collectable.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "server/table.h"

namespace paragan {

class ServerMetrics {
 public:
  // Registers the families on `registry`, which must outlive this object.
  ServerMetrics(prometheus::Registry* registry, int shard_id);

  void RecordPull(const std::string& table, int64_t bytes);
  // A push that reached the table (accepted, pending or refused by policy).
  void RecordPush(const std::string& table, int64_t bytes,
                  const PushResult& result);
  // A push refused with an error (malformed, unknown tensor, NaN, ...).
  void RecordInvalidPush(const std::string& table, int64_t bytes);
  void SetVersion(const std::string& table, int64_t version);
  // Seconds one push spent in the table's update rule.
  void RecordApplyTime(const std::string& table, double seconds);
  // A checkpoint attempt that finished at Unix time `unix_s` (ok or not).
  void RecordCheckpoint(bool ok, double unix_s);
  void RecordExpiredLeases(const std::string& table, int64_t workers,
                           bool round_completed);
  void RecordDeregistered(const std::string& table, int64_t workers,
                          bool round_completed);
  void SetRegisteredWorkers(const std::string& table, int64_t workers);
  void SetDataPlaneConnections(int64_t connections);
  // A client refused, or its connection cut, for breaking `limit` (e.g.
  // "workers", "data_plane_connections").
  void RecordLimitHit(const std::string& limit);

 private:
  prometheus::Labels Labels(const std::string& table) const;

  std::string shard_;
  prometheus::Family<prometheus::Counter>& pushes_;
  prometheus::Family<prometheus::Counter>& pulls_;
  prometheus::Family<prometheus::Counter>& push_bytes_;
  prometheus::Family<prometheus::Counter>& pull_bytes_;
  prometheus::Family<prometheus::Histogram>& staleness_;
  prometheus::Family<prometheus::Counter>& rejected_;
  prometheus::Family<prometheus::Gauge>& version_;
  prometheus::Family<prometheus::Counter>& expired_leases_;
  prometheus::Family<prometheus::Counter>& deregistered_;
  prometheus::Family<prometheus::Gauge>& registered_workers_;
  prometheus::Family<prometheus::Counter>& lease_rounds_;
  prometheus::Gauge& data_plane_connections_;
  prometheus::Family<prometheus::Counter>& limit_hits_;
  prometheus::Family<prometheus::Counter>& apply_seconds_;
  prometheus::Family<prometheus::Gauge>& last_checkpoint_;
  prometheus::Family<prometheus::Counter>& checkpoint_failures_;
};

}  // namespace paragan

#endif  // PARAGAN_SERVER_METRICS_H_

#ifndef PARAGAN_SERVER_SHARD_HANDLER_H_
#define PARAGAN_SERVER_SHARD_HANDLER_H_

// The transport-neutral core of one shard's API over its ParameterTables
// (normally "G" and "D"): registration, pulls, pushes, state and leases, with
// their checks, error mapping and metrics. The gRPC service
// (parameter_server_service.h) and the data plane (data_plane_server.h) are
// thin adapters that call it.
//
// Tables: "G" and "D" (pull and push) and, when the G table keeps an EMA,
// "G_ema" (pull only: the EMA of G's trainable tensors and G's current
// buffers, at G's version; pushes to it fail with FAILED_PRECONDITION).
//
// Leases: Register, every pull (also every 100 ms while it waits for
// min_version) and every push (once, in BeginPush) renew the worker's lease
// on all tables of the shard; ExpireLeases drops the silent ones (see
// ParameterTable).
//
// Error mapping: malformed pushes (wrong shape, unknown tensor, NaN/Inf,
// truncated or out-of-order chunks, sizes inconsistent with total_bytes)
// -> INVALID_ARGUMENT; too large -> RESOURCE_EXHAUSTED; unregistered worker
// or base_version ahead of the table -> FAILED_PRECONDITION; unknown table
// -> NOT_FOUND. None of them changes a table. Refusals by the staleness
// policy (and duplicates in a synchronous round) are OK responses with
// accepted = false.

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/auth.h"
#include "proto/paragan.pb.h"
#include "server/metrics.h"
#include "server/table.h"

namespace paragan {

struct ServiceOptions {
  int shard_id = 0;
  int num_shards = 1;
  std::string model;  // reported to workers, e.g. "dcgan32"
  // The asymmetric policy, advertised to workers in RegisterResponse: each
  // worker runs this many D updates per G update. The server does not gate
  // G pushes on it (with several asynchronous workers a server-side count
  // would refuse legitimate pushes); it is configuration every worker reads
  // from the servers rather than from its own flags.
  int d_steps_per_g_step = 1;
  // Payload bytes per pulled chunk (1 to 4 MB is the intended range).
  int64_t chunk_bytes = int64_t{1} << 20;
  // Largest push (float32 bytes after widening) accepted; 0 means the
  // pushed table's size on this shard, which no well-formed push exceeds.
  int64_t max_push_bytes = 0;
  // Longest a Pull with min_version waits (also bounded by the deadline).
  absl::Duration max_pull_wait = absl::Seconds(120);
  // Every gRPC call and data-plane connection must present this bearer
  // token (common/auth.h); empty: no authentication.
  std::string auth_token;
  // Workers registered at once (on any one table); a new one beyond is
  // refused with RESOURCE_EXHAUSTED until one leaves or its lease expires.
  // 0: no limit.
  int max_workers = 1024;
};

class ShardHandler {
 public:
  // `tables` and `metrics` (may be null) must outlive the handler.
  ShardHandler(const ServiceOptions& options,
               const std::vector<ParameterTable*>& tables,
               ServerMetrics* metrics);

  absl::StatusOr<v1::RegisterResponse> Register(
      const v1::RegisterRequest& request);

  // The worker leaves every table now (ParameterTable::DeregisterWorker),
  // logged and counted; a later RPC of it needs a new Register.
  absl::StatusOr<v1::DeregisterResponse> Deregister(
      const v1::DeregisterRequest& request);

  struct PullPlan {
    std::string table;  // as pulled: "G", "D" or "G_ema"
    SharedTableSnapshot snapshot;
  };
  // Checks the request, renews the worker's lease, waits for min_version
  // (until `deadline`, max_pull_wait or `cancelled()`) and takes a
  // copy-on-write snapshot of the tensors asked for.
  absl::StatusOr<PullPlan> PreparePull(const v1::PullRequest& request,
                                       absl::Time deadline,
                                       const std::function<bool()>& cancelled);
  void RecordPull(const std::string& table, int64_t wire_bytes);

  // A push, checked before any payload byte is read: BeginPush once (table
  // writable, worker registered; renews the worker's lease), CheckTensor per
  // tensor, then ApplyPush with the received values.
  class PushTarget {
   public:
    // Known tensor of this table, same shape, the kind its spec takes
    // (GRADIENT for a trainable tensor, VALUE for a buffer).
    absl::Status CheckTensor(const std::string& name, const Shape& shape,
                             v1::TensorKind kind) const;
    const std::string& table_name() const { return table_->name(); }

   private:
    friend class ShardHandler;
    PushTarget(ParameterTable* table, std::string worker_id, int shard_id)
        : table_(table),
          worker_id_(std::move(worker_id)),
          shard_id_(shard_id) {}
    ParameterTable* table_;
    std::string worker_id_;
    int shard_id_;
  };
  absl::StatusOr<PushTarget> BeginPush(const std::string& table,
                                       const std::string& worker_id);
  // Applies a fully received push (values checked for NaN/Inf by the table).
  absl::StatusOr<v1::PushResponse> ApplyPush(
      const PushTarget& target, int64_t base_version, uint64_t push_id,
      const TensorMap& gradients, const TensorMap& buffers, int64_t wire_bytes);
  // Counts a refused push (labelled "unknown" unless `table` exists) and
  // returns `status`.
  absl::Status RecordInvalidPush(const std::string& table, int64_t wire_bytes,
                                 const absl::Status& status);

  v1::StateResponse GetState() const;

  // Drops workers whose lease expired on every table (ParameterTable::
  // ExpireLeases), logs each drop to stderr and counts it in the metrics.
  // The binary calls it about once a second.
  std::vector<LeaseExpiry> ExpireLeases();

  // Largest push accepted, in float32 bytes.
  int64_t max_push_bytes() const { return max_push_bytes_; }
  int64_t chunk_bytes() const { return options_.chunk_bytes; }
  int shard_id() const { return options_.shard_id; }
  // Checks the callers of both the gRPC service and the data plane.
  const CallAuthenticator& auth() const { return auth_; }
  ServerMetrics* metrics() const { return metrics_; }  // may be null
  // Advertised in RegisterResponse.data_plane_port; 0: none. Set before
  // the handler takes calls.
  void set_data_plane_port(int port) { data_plane_port_.store(port); }

 private:
  ParameterTable* FindTable(const std::string& name) const;
  // Renews `worker_id`'s lease on every table that registered it.
  void RenewLeases(const std::string& worker_id);
  void UpdateWorkerGauges();
  // Logs and counts workers dropped from `table` (why: "lease expired:
  // ..." or "left the job").
  void ReportDropped(const std::string& table, const LeaseExpiry& e,
                     bool expired);

  const ServiceOptions options_;
  std::map<std::string, ParameterTable*> tables_;
  ServerMetrics* const metrics_;
  const CallAuthenticator auth_;
  int64_t max_push_bytes_ = 0;
  std::atomic<int> data_plane_port_{0};
  // Makes a registration's check against max_workers and the registration
  // one step.
  std::mutex register_mu_;
};

}  // namespace paragan

#endif  // PARAGAN_SERVER_SHARD_HANDLER_H_

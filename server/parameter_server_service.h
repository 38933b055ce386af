#ifndef PARAGAN_SERVER_PARAMETER_SERVER_SERVICE_H_
#define PARAGAN_SERVER_PARAMETER_SERVER_SERVICE_H_

// The paragan.v1.ParameterServer gRPC service of one shard, over its
// ParameterTables (normally "G" and "D").

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "proto/paragan.grpc.pb.h"
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
};

// Tables: "G" and "D" (pull and push) and, when the G table keeps an EMA,
// "G_ema" (pull only: the EMA of G's trainable tensors and G's current
// buffers, at G's version; pushes to it fail with FAILED_PRECONDITION).
//
// Leases: RegisterWorker, every Pull (also every 100 ms while it waits for
// min_version) and every Push renew the worker's lease on all tables of the
// shard; ExpireLeases drops the silent ones (see ParameterTable).
//
// Error mapping: malformed pushes (wrong shape, unknown tensor, NaN/Inf,
// truncated or out-of-order chunks, sizes inconsistent with total_bytes)
// -> INVALID_ARGUMENT; too large -> RESOURCE_EXHAUSTED; unregistered worker
// or base_version ahead of the table -> FAILED_PRECONDITION; unknown table
// -> NOT_FOUND. None of them changes a table. Refusals by the staleness
// policy (and duplicates in a synchronous round) are OK responses with
// accepted = false.
//
// Pull and Push move TensorChunks as raw grpc::ByteBuffers (server/
// tensor_wire.h): pulled values leave from a snapshot without protobuf
// copies, pushed bytes are copied once, from gRPC's buffers into the
// gradient. The bytes are ordinary TensorChunk messages, so the generated
// paragan.v1.ParameterServer stubs work against this service unchanged.
class ParameterServerService final : public grpc::Service {
 public:
  // `tables` and `metrics` (may be null) must outlive the service.
  ParameterServerService(const ServiceOptions& options,
                         const std::vector<ParameterTable*>& tables,
                         ServerMetrics* metrics);

  grpc::Status RegisterWorker(grpc::ServerContext* context,
                              const v1::RegisterRequest* request,
                              v1::RegisterResponse* response);
  grpc::Status Pull(grpc::ServerContext* context,
                    const v1::PullRequest* request,
                    grpc::ServerWriter<grpc::ByteBuffer>* writer);
  grpc::Status Push(grpc::ServerContext* context,
                    grpc::ServerReader<grpc::ByteBuffer>* reader,
                    v1::PushResponse* response);
  grpc::Status GetState(grpc::ServerContext* context,
                        const v1::StateRequest* request,
                        v1::StateResponse* response);

  // The transport-independent halves of Pull and Push, shared by the gRPC
  // methods above and the data plane (server/data_plane_server.h).
  struct PullPlan {
    std::string table;  // as pulled: "G", "D" or "G_ema"
    SharedTableSnapshot snapshot;
  };
  // Checks the request, renews the worker's lease, waits for min_version
  // (until `deadline`, the service's max_pull_wait or `cancelled()`) and
  // takes a copy-on-write snapshot of the tensors asked for.
  absl::StatusOr<PullPlan> PreparePull(const v1::PullRequest& request,
                                       absl::Time deadline,
                                       const std::function<bool()>& cancelled);
  void RecordPull(const std::string& table, int64_t wire_bytes);
  // The first chunk (header fields only) of each pushed tensor: table
  // writable, worker registered (renews its lease), tensor known, shape and
  // kind as the table's.
  absl::Status ValidateNewTensor(const v1::TensorChunk& chunk) const;
  // Applies a fully received push (values checked for NaN/Inf by the table).
  absl::StatusOr<v1::PushResponse> ApplyPush(
      const std::string& table, const std::string& worker_id,
      int64_t base_version, uint64_t push_id, const TensorMap& gradients,
      const TensorMap& buffers, int64_t wire_bytes);
  // Counts a refused push (labelled "unknown" unless `table` exists) and
  // returns `status`.
  absl::Status RecordInvalidPush(const std::string& table, int64_t wire_bytes,
                                 const absl::Status& status);
  // Largest push accepted, in float32 bytes.
  int64_t max_push_bytes() const { return max_push_bytes_; }
  int shard_id() const { return options_.shard_id; }
  ServerMetrics* metrics() const { return metrics_; }  // may be null
  // Advertised in RegisterResponse.data_plane_port; 0: none. Set before
  // the service takes calls.
  void set_data_plane_port(int port) { data_plane_port_.store(port); }

  // Drops workers whose lease expired on every table (ParameterTable::
  // ExpireLeases), logs each drop to stderr and counts it in the metrics.
  // The binary calls it about once a second.
  std::vector<LeaseExpiry> ExpireLeases();

 private:
  ParameterTable* FindTable(const std::string& name) const;
  // Renews `worker_id`'s lease on every table that registered it.
  void RenewLeases(const std::string& worker_id);
  void UpdateWorkerGauges();

  const ServiceOptions options_;
  std::map<std::string, ParameterTable*> tables_;
  ServerMetrics* const metrics_;
  int64_t max_push_bytes_ = 0;
  std::atomic<int> data_plane_port_{0};
};

}  // namespace paragan

#endif  // PARAGAN_SERVER_PARAMETER_SERVER_SERVICE_H_

#ifndef PARAGAN_SERVER_PS_CLIENT_H_
#define PARAGAN_SERVER_PS_CLIENT_H_

// A blocking client of one parameter-server shard: register, pull a table
// slice (reassembled from chunks), push gradients (split into chunks), read
// the state. Workers hold one per shard; placement (common/placement.h)
// tells them which tensors each shard holds.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/tensor.h"
#include "common/tls.h"
#include "grpcpp/channel.h"
#include "grpcpp/impl/rpc_method.h"
#include "proto/paragan.grpc.pb.h"
#include "server/data_plane.h"

namespace paragan {

struct PulledTensor {
  Shape shape;
  std::vector<float> values;
};

struct PulledTable {
  // -1 when the shard holds no tensor of the table (then `tensors` is empty
  // and the worker has nothing to push there).
  int64_t version = 0;
  std::map<std::string, PulledTensor> tensors;
};

// One tensor to push; `values` holds prod(shape) floats and must stay valid
// during Push.
struct PushTensor {
  std::string name;
  Shape shape;
  const float* values = nullptr;
  v1::TensorKind kind = v1::GRADIENT;
  // When set, float32 pushes send `values` without copying them, and the
  // owner keeps them alive (and unchanged) until gRPC has sent them, which
  // may be after Push returns. Unset: the values are copied into gRPC.
  std::shared_ptr<const void> owner;
};

class ParameterServerClient {
 public:
  struct Options {
    int64_t chunk_bytes = int64_t{1} << 20;
    absl::Duration timeout = absl::Seconds(120);  // per call
    // Pull and Push through the shard's data plane (server/data_plane.h)
    // when its RegisterResponse advertises one and `data_plane_host` is
    // set; gRPC otherwise, and whenever the data plane cannot be reached
    // while gRPC can.
    bool data_plane = true;
    std::string data_plane_host;
    // gRPC message limit of the channel the (target, Options) constructor
    // makes (the server's default is 16 MiB).
    int max_message_bytes = 16 << 20;
    // The bearer token, sent with every call and on every data-plane
    // connection, and the channel's TLS (common/tls.h). With TLS on the data
    // plane (which has none) is never used.
    ClientSecurity security;
  };

  // A channel to "host:port" whose messages may be as large as the
  // server's (default 16 MiB), secured by `security`: ConnectTensorChannel
  // (common/transport_args.h), the one factory of tensor channels.
  static std::shared_ptr<grpc::Channel> Connect(
      const std::string& target, int max_message_bytes = 16 << 20,
      const ClientSecurity& security = {});

  // A client of the shard at "host:port" (Connect with
  // options.max_message_bytes and options.security), whose data plane, once
  // Register learns its port, is reached on the same host.
  ParameterServerClient(const std::string& target, Options options);
  explicit ParameterServerClient(std::shared_ptr<grpc::Channel> channel)
      : ParameterServerClient(std::move(channel), Options()) {}
  ParameterServerClient(std::shared_ptr<grpc::Channel> channel,
                        Options options);

  // Also learns (again) the shard's data-plane port.
  absl::StatusOr<v1::RegisterResponse> Register(const std::string& worker_id,
                                                v1::WorkerRole role);
  // Leaves the job: every table of the shard drops `worker_id` now.
  // `timeout`: this call's (a leaving process does not wait long).
  absl::StatusOr<v1::DeregisterResponse> Deregister(
      const std::string& worker_id, absl::Duration timeout);
  // The shard's slice of `table` (or the tensors named), all at one version.
  // With min_version > 0 the server first waits for that version. The
  // tensors of `recycle` (e.g. the previous pull's), when given, lend their
  // memory to the result's tensors of the same name (the data plane reads
  // into it; a new vector costs an allocation and a zero fill); *recycle is
  // left empty.
  absl::StatusOr<PulledTable> Pull(const std::string& table,
                                   const std::string& worker_id,
                                   const std::vector<std::string>& names = {},
                                   v1::DType dtype = v1::FLOAT32,
                                   int64_t min_version = 0,
                                   PulledTable* recycle = nullptr);
  // A policy refusal is an OK status with accepted == false; malformed
  // pushes come back as errors. A retry of a push must reuse its push_id
  // (see TensorChunk.push_id); 0 sends none.
  absl::StatusOr<v1::PushResponse> Push(const std::string& table,
                                        const std::string& worker_id,
                                        int64_t base_version,
                                        const std::vector<PushTensor>& tensors,
                                        v1::DType dtype = v1::FLOAT32,
                                        uint64_t push_id = 0);
  absl::StatusOr<v1::StateResponse> GetState();

  v1::ParameterServer::Stub* stub() { return stub_.get(); }

  // The data-plane port calls use now; 0: gRPC only.
  int data_plane_port() const;

 private:
  // The per-call deadline and the bearer token.
  void PrepareContext(grpc::ClientContext* ctx) const;
  absl::StatusOr<PulledTable> GrpcPull(const v1::PullRequest& request);
  absl::StatusOr<v1::PushResponse> GrpcPush(
      const std::string& table, const std::string& worker_id,
      int64_t base_version, const std::vector<PushTensor>& tensors,
      v1::DType dtype, uint64_t push_id);

  // Data plane. One error channel: every call returns an absl::Status(Or).
  // PullOn/PushOn return the server's answer, or a transport error (the
  // connection is then unusable); ps_client.cc tells them apart by a status
  // payload that never leaves this class.
  absl::StatusOr<PulledTable> PullOn(int fd, const v1::PullRequest& request,
                                     PulledTable* recycle);
  absl::StatusOr<v1::PushResponse> PushOn(
      int fd, const v1::DataPlanePush& meta,
      const std::vector<PushTensor>& tensors);
  // Runs `call` on a pooled connection (or a new one). A transport failure
  // on a reused connection, which the server may have closed while it was
  // idle, is tried once more on a new one when `may_repeat`. When no
  // connection could be made (nothing was sent) the status says so
  // (IsDataPlaneUnreachable in ps_client.cc).
  // Connections are pooled per table, so that the server's per-connection
  // receive buffers (server/data_plane_server.h) fit the next push.
  template <typename T>
  absl::StatusOr<T> OnDataPlane(
      int port, const std::string& table, bool may_repeat,
      const std::function<absl::StatusOr<T>(int fd)>& call);
  // The one place that picks the transport of a Pull or Push: the data
  // plane when the shard advertised one, gRPC when it did not, or when its
  // data plane cannot be reached; if gRPC then works, the data plane stays
  // off (until a Register advertises another port), said once on stderr.
  template <typename T>
  absl::StatusOr<T> CallWithFallback(
      const std::string& table, bool may_repeat,
      const std::function<absl::StatusOr<T>(int fd)>& on_data_plane,
      const std::function<absl::StatusOr<T>()>& on_grpc);
  void NoteUnreachable(int port, const absl::Status& grpc_status);

  Options options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::ParameterServer::Stub> stub_;
  // Pull and Push as raw ByteBuffer streams (server/tensor_wire.h).
  grpc::internal::RpcMethod pull_method_, push_method_;

  mutable std::mutex dp_mu_;
  int dp_port_ = 0;              // advertised by the last Register
  int dp_unreachable_port_ = 0;  // see NoteUnreachable
  // Connections between calls, by table.
  std::map<std::string, std::vector<Socket>> dp_idle_;
};

}  // namespace paragan

#endif  // PARAGAN_SERVER_PS_CLIENT_H_

#include "server/ps_client.h"

#include <chrono>
#include <iostream>

#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/types/optional.h"
#include "common/auth.h"
#include "common/check.h"
#include "common/grpc_status.h"
#include "common/tensor_codec.h"
#include "common/transport_args.h"
#include "grpcpp/client_context.h"
#include "server/data_plane.h"
#include "server/tensor_wire.h"

namespace paragan {

namespace {

// How a data-plane call failed, as a payload on its status: the one error
// channel of the data-plane calls (see ps_client.h). Untagged errors of
// PullOn/PushOn are transport failures.
constexpr char kFailureUrl[] = "type.paragan/ps_client.data_plane_failure";
constexpr char kAnswered[] = "answered";        // the server's own error
constexpr char kUnreachable[] = "unreachable";  // no connection, nothing sent

absl::Status Tagged(absl::Status st, const char* how) {
  st.SetPayload(kFailureUrl, absl::Cord(how));
  return st;
}

bool HasTag(const absl::Status& st, const char* how) {
  const absl::optional<absl::Cord> p = st.GetPayload(kFailureUrl);
  return p.has_value() && *p == how;
}

// The status without its tag, as callers see it.
absl::Status Untagged(const absl::Status& st) {
  return absl::Status(st.code(), st.message());
}

bool IsDataPlaneUnreachable(const absl::Status& st) {
  return HasTag(st, kUnreachable);
}

// The server's error reply: its answer, or (a refusal over its connection
// limits, before it read anything) an unreachable data plane, so that the
// call goes over gRPC.
absl::Status ReplyError(const v1::DataPlaneReply& reply) {
  const absl::Status st(static_cast<absl::StatusCode>(reply.code()),
                        reply.message());
  const bool refused =
      absl::IsResourceExhausted(st) &&
      absl::StartsWith(reply.message(), kDataPlaneRefusedPrefix);
  return Tagged(st, refused ? kUnreachable : kAnswered);
}

}  // namespace

std::shared_ptr<grpc::Channel> ParameterServerClient::Connect(
    const std::string& target, int max_message_bytes,
    const ClientSecurity& security) {
  return ConnectTensorChannel(target, max_message_bytes, security);
}

ParameterServerClient::ParameterServerClient(const std::string& target,
                                             Options options)
    : ParameterServerClient(
          Connect(target, options.max_message_bytes, options.security), [&] {
            if (options.data_plane_host.empty()) {
              options.data_plane_host = HostOfTarget(target);
            }
            return options;
          }()) {}

int ParameterServerClient::data_plane_port() const {
  std::lock_guard<std::mutex> lock(dp_mu_);
  return dp_port_;
}

ParameterServerClient::ParameterServerClient(
    std::shared_ptr<grpc::Channel> channel, Options options)
    : options_(options),
      channel_(channel),
      stub_(v1::ParameterServer::NewStub(channel)),
      pull_method_(ParameterServerMethodPath("Pull"),
                   grpc::internal::RpcMethod::SERVER_STREAMING, channel),
      push_method_(ParameterServerMethodPath("Push"),
                   grpc::internal::RpcMethod::CLIENT_STREAMING, channel) {}

void ParameterServerClient::PrepareContext(grpc::ClientContext* ctx) const {
  ctx->set_deadline(std::chrono::system_clock::now() +
                    absl::ToChronoMilliseconds(options_.timeout));
  AddAuthMetadata(options_.security.auth_token, ctx);
}

absl::StatusOr<v1::DeregisterResponse> ParameterServerClient::Deregister(
    const std::string& worker_id, absl::Duration timeout) {
  grpc::ClientContext ctx;
  PrepareContext(&ctx);
  ctx.set_deadline(std::chrono::system_clock::now() +
                   absl::ToChronoMilliseconds(timeout));
  v1::DeregisterRequest req;
  req.set_worker_id(worker_id);
  v1::DeregisterResponse resp;
  PG_RETURN_IF_ERROR(options_.security.Explain(
      FromGrpcStatus(stub_->DeregisterWorker(&ctx, req, &resp))));
  return resp;
}

absl::StatusOr<v1::RegisterResponse> ParameterServerClient::Register(
    const std::string& worker_id, v1::WorkerRole role) {
  grpc::ClientContext ctx;
  PrepareContext(&ctx);
  v1::RegisterRequest req;
  req.set_worker_id(worker_id);
  req.set_role(role);
  v1::RegisterResponse resp;
  absl::Status st = options_.security.Explain(
      FromGrpcStatus(stub_->RegisterWorker(&ctx, req, &resp)));
  if (!st.ok()) return st;
  if (options_.data_plane && !options_.security.tls_on() &&
      !options_.data_plane_host.empty()) {
    std::lock_guard<std::mutex> lock(dp_mu_);
    const int port = resp.data_plane_port() == dp_unreachable_port_
                         ? 0
                         : resp.data_plane_port();
    if (port != dp_port_) {
      // Another server process: its predecessor's connections are dead.
      dp_idle_.clear();
      dp_port_ = port;
    }
  }
  return resp;
}

absl::StatusOr<PulledTable> ParameterServerClient::Pull(
    const std::string& table, const std::string& worker_id,
    const std::vector<std::string>& names, v1::DType dtype, int64_t min_version,
    PulledTable* recycle) {
  v1::PullRequest req;
  req.set_table(table);
  req.set_worker_id(worker_id);
  for (const std::string& n : names) req.add_tensors(n);
  req.set_dtype(dtype);
  req.set_min_version(min_version);
  absl::StatusOr<PulledTable> r = CallWithFallback<PulledTable>(
      table, /*may_repeat=*/true,
      [&](int fd) { return PullOn(fd, req, recycle); },
      [&] {
        if (recycle != nullptr) recycle->tensors.clear();
        return GrpcPull(req);
      });
  if (recycle != nullptr) recycle->tensors.clear();
  return r;
}

absl::StatusOr<PulledTable> ParameterServerClient::GrpcPull(
    const v1::PullRequest& req) {
  grpc::ClientContext ctx;
  PrepareContext(&ctx);
  std::unique_ptr<grpc::ClientReader<grpc::ByteBuffer>> reader(
      grpc::internal::ClientReaderFactory<grpc::ByteBuffer>::Create(
          channel_.get(), pull_method_, &ctx, req));
  ChunkAssembler assembler({});
  grpc::ByteBuffer message;
  ChunkView view;
  absl::Status st;
  while (reader->Read(&message)) {
    if (st.ok()) st = AddMessage(message, &view, &assembler);
    if (!st.ok()) ctx.TryCancel();
  }
  absl::Status rpc =
      options_.security.Explain(FromGrpcStatus(reader->Finish()));
  if (!st.ok()) return st;
  if (!rpc.ok()) return rpc;
  PulledTable out;
  if (assembler.empty()) {
    // The shard holds no tensor of this table (more shards than tensors):
    // nothing to pull or push here.
    out.version = -1;
    return out;
  }
  st = assembler.Finish();
  if (!st.ok()) return st;
  out.version = assembler.base_version();
  for (auto& [name, t] : assembler.tensors()) {
    out.tensors[name] = {std::move(t.shape), std::move(t.values)};
  }
  return out;
}

absl::StatusOr<v1::PushResponse> ParameterServerClient::Push(
    const std::string& table, const std::string& worker_id,
    int64_t base_version, const std::vector<PushTensor>& tensors,
    v1::DType dtype, uint64_t push_id) {
  // The data plane's metadata, built only when the data plane is used.
  absl::optional<v1::DataPlanePush> meta;
  auto data_plane_meta = [&]() -> const v1::DataPlanePush& {
    if (meta.has_value()) return *meta;
    meta.emplace();
    meta->set_table(table);
    meta->set_worker_id(worker_id);
    meta->set_base_version(base_version);
    meta->set_push_id(push_id);
    meta->set_dtype(dtype);
    for (const PushTensor& t : tensors) {
      v1::DataPlaneTensor* m = meta->add_tensors();
      m->set_name(t.name);
      for (int64_t d : t.shape) m->add_shape(d);
      m->set_kind(t.kind);
    }
    return *meta;
  };
  // Repeating a push is safe only when the server can recognise it.
  return CallWithFallback<v1::PushResponse>(
      table, /*may_repeat=*/push_id != 0,
      [&](int fd) { return PushOn(fd, data_plane_meta(), tensors); },
      [&] {
        return GrpcPush(table, worker_id, base_version, tensors, dtype,
                        push_id);
      });
}

absl::StatusOr<v1::PushResponse> ParameterServerClient::GrpcPush(
    const std::string& table, const std::string& worker_id,
    int64_t base_version, const std::vector<PushTensor>& tensors,
    v1::DType dtype, uint64_t push_id) {
  grpc::ClientContext ctx;
  PrepareContext(&ctx);
  v1::PushResponse resp;
  std::unique_ptr<grpc::ClientWriter<grpc::ByteBuffer>> writer(
      grpc::internal::ClientWriterFactory<grpc::ByteBuffer>::Create(
          channel_.get(), push_method_, &ctx, &resp));
  ChunkWriter out(options_.chunk_bytes,
                  [&](const grpc::ByteBuffer& m) { return writer->Write(m); });
  for (const PushTensor& t : tensors) {
    v1::TensorChunk header;
    header.set_table(table);
    header.set_tensor_name(t.name);
    for (int64_t d : t.shape) header.add_shape(d);
    header.set_base_version(base_version);
    header.set_worker_id(worker_id);
    header.set_kind(t.kind);
    header.set_push_id(push_id);
    // A failed write means the server ended the call; Finish says why.
    if (!out.Add(header, t.values, NumElements(t.shape), dtype, t.owner)) break;
  }
  out.Flush();
  writer->WritesDone();
  absl::Status st = options_.security.Explain(FromGrpcStatus(writer->Finish()));
  if (!st.ok()) return st;
  return resp;
}

template <typename T>
absl::StatusOr<T> ParameterServerClient::CallWithFallback(
    const std::string& table, bool may_repeat,
    const std::function<absl::StatusOr<T>(int fd)>& on_data_plane,
    const std::function<absl::StatusOr<T>()>& on_grpc) {
  const int port = data_plane_port();
  if (port <= 0) return on_grpc();
  absl::StatusOr<T> r = OnDataPlane<T>(port, table, may_repeat, on_data_plane);
  if (r.ok() || !IsDataPlaneUnreachable(r.status())) return r;
  absl::StatusOr<T> g = on_grpc();
  NoteUnreachable(port, g.status());
  return g;
}

template <typename T>
absl::StatusOr<T> ParameterServerClient::OnDataPlane(
    int port, const std::string& table, bool may_repeat,
    const std::function<absl::StatusOr<T>(int fd)>& call) {
  absl::Status transport;
  for (int attempt = 0; attempt < 2; ++attempt) {
    Socket socket;
    {
      std::lock_guard<std::mutex> lock(dp_mu_);
      std::vector<Socket>& idle = dp_idle_[table];
      if (!idle.empty()) {
        socket = std::move(idle.back());
        idle.pop_back();
      }
    }
    const bool reused = socket.valid();
    if (!reused) {
      absl::StatusOr<Socket> s =
          ConnectTcp(options_.data_plane_host, port, options_.timeout);
      if (!s.ok()) {
        // Nothing reached a server in this call (a reused connection that
        // failed was dead); a repeated push_id is recognised anyway.
        return Tagged(s.status(), kUnreachable);
      }
      socket = *std::move(s);
      if (!options_.security.auth_token.empty()) {
        absl::Status auth =
            AuthenticateDataPlane(socket.fd(), options_.security.auth_token);
        // A refusal is the server's answer, not an unreachable data plane.
        if (absl::IsUnauthenticated(auth)) return auth;
        if (!auth.ok()) return Tagged(auth, kUnreachable);
      }
    }
    absl::StatusOr<T> result = call(socket.fd());
    // Refused over the server's connection limits: nothing was served.
    if (!result.ok() && IsDataPlaneUnreachable(result.status())) {
      return result.status();
    }
    if (result.ok() || HasTag(result.status(), kAnswered)) {
      std::lock_guard<std::mutex> lock(dp_mu_);
      // A connection to a server process since replaced is dropped.
      if (dp_port_ == port) dp_idle_[table].push_back(std::move(socket));
      if (!result.ok()) return Untagged(result.status());
      return result;
    }
    transport = result.status();
    if (!reused || !may_repeat) break;
  }
  return absl::Status(
      transport.code(),
      absl::StrCat("shard data plane at ", options_.data_plane_host, ":", port,
                   ": ", transport.message()));
}

void ParameterServerClient::NoteUnreachable(int port,
                                            const absl::Status& grpc_status) {
  if (!grpc_status.ok() && (absl::IsUnavailable(grpc_status) ||
                            absl::IsDeadlineExceeded(grpc_status))) {
    return;  // the whole shard is down: try the data plane again later
  }
  // A shard restarted between two calls serves its data plane on a new
  // port, and this client may not register again (its registration was
  // restored): ask the shard which port it serves now.
  const absl::StatusOr<v1::StateResponse> state = GetState();
  std::lock_guard<std::mutex> lock(dp_mu_);
  if (dp_port_ != port) return;
  if (state.ok() && state->data_plane_port() > 0 &&
      state->data_plane_port() != port) {
    dp_idle_.clear();
    dp_port_ = state->data_plane_port();
    return;
  }
  std::cerr << "paragan: the data plane of the shard at "
            << options_.data_plane_host << ":" << port
            << " cannot be reached while its gRPC service can; tensors go "
               "through gRPC"
            << std::endl;
  dp_unreachable_port_ = port;
  dp_port_ = 0;
}

absl::StatusOr<PulledTable> ParameterServerClient::PullOn(
    int fd, const v1::PullRequest& request, PulledTable* recycle) {
  PG_RETURN_IF_ERROR(SendFrame(fd, FrameKind::kPull, request, {}));
  FrameHeader header;
  std::string meta;
  PG_RETURN_IF_ERROR(RecvFrameStart(fd, &header, &meta));
  v1::DataPlaneReply reply;
  if (header.kind != static_cast<uint16_t>(FrameKind::kReply) ||
      !reply.ParseFromString(meta)) {
    return absl::DataLossError("the server's answer is not a reply frame");
  }
  if (reply.code() != 0) {
    PG_RETURN_IF_ERROR(Discard(fd, header.payload_bytes));
    return ReplyError(reply);
  }
  const int64_t elem = WireDTypeSize(reply.dtype());
  if (elem == 0) return absl::DataLossError("reply of an unknown dtype");
  PulledTable out;
  out.version = reply.tensors().empty() ? -1 : reply.version();
  uint64_t expected = 0;
  std::vector<int64_t> counts;
  for (const v1::DataPlaneTensor& t : reply.tensors()) {
    int64_t n = 0;
    PG_RETURN_IF_ERROR(CheckedNumElements(
        Shape(t.shape().begin(), t.shape().end()), t.name(), &n));
    counts.push_back(n);
    expected += static_cast<uint64_t>(n * elem);
  }
  if (expected != header.payload_bytes) {
    return absl::DataLossError(
        absl::StrCat("pull reply of ", header.payload_bytes,
                     " payload bytes for tensors of ", expected));
  }
  // DataPlaneTensor.kind is not read: a pull's tensors are values, and the
  // worker's layout (the shards' placement) says which are trainable.
  std::vector<char> staging;
  for (int i = 0; i < reply.tensors_size(); ++i) {
    const v1::DataPlaneTensor& t = reply.tensors(i);
    PulledTensor& p = out.tensors[t.name()];
    if (recycle != nullptr) {
      auto old = recycle->tensors.find(t.name());
      if (old != recycle->tensors.end())
        p.values = std::move(old->second.values);
    }
    p.shape.assign(t.shape().begin(), t.shape().end());
    const size_t n = static_cast<size_t>(counts[static_cast<size_t>(i)]);
    PG_RETURN_IF_ERROR(
        RecvTensorValues(fd, reply.dtype(), n, &p.values, &staging));
  }
  return out;
}

absl::StatusOr<v1::PushResponse> ParameterServerClient::PushOn(
    int fd, const v1::DataPlanePush& meta,
    const std::vector<PushTensor>& tensors) {
  TensorPayload payload(meta.dtype());
  for (const PushTensor& t : tensors) {
    payload.Add(t.values, NumElements(t.shape));
  }
  PG_RETURN_IF_ERROR(SendFrame(fd, FrameKind::kPush, meta, payload.pieces()));
  FrameHeader header;
  std::string reply_bytes;
  PG_RETURN_IF_ERROR(RecvFrameStart(fd, &header, &reply_bytes));
  v1::DataPlaneReply reply;
  if (header.kind != static_cast<uint16_t>(FrameKind::kReply) ||
      header.payload_bytes != 0 || !reply.ParseFromString(reply_bytes)) {
    return absl::DataLossError("the server's answer is not a push reply");
  }
  if (reply.code() != 0) return ReplyError(reply);
  return reply.push();
}

absl::StatusOr<v1::StateResponse> ParameterServerClient::GetState() {
  grpc::ClientContext ctx;
  PrepareContext(&ctx);
  v1::StateResponse resp;
  absl::Status st = options_.security.Explain(
      FromGrpcStatus(stub_->GetState(&ctx, v1::StateRequest(), &resp)));
  if (!st.ok()) return st;
  return resp;
}

}  // namespace paragan

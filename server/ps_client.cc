#include "server/ps_client.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "server/grpc_status.h"
#include "server/tensor_codec.h"
#include "server/tensor_wire.h"
#include "server/transport_args.h"

namespace paragan {

std::shared_ptr<grpc::Channel> ParameterServerClient::Connect(
    const std::string& target, int max_message_bytes) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(max_message_bytes);
  args.SetMaxSendMessageSize(max_message_bytes);
  SetTensorTransportArgs(&args);
  return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(),
                                   args);
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

void ParameterServerClient::SetDeadline(grpc::ClientContext* ctx) const {
  ctx->set_deadline(std::chrono::system_clock::now() +
                    absl::ToChronoMilliseconds(options_.timeout));
}

absl::StatusOr<v1::RegisterResponse> ParameterServerClient::Register(
    const std::string& worker_id, v1::WorkerRole role) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  v1::RegisterRequest req;
  req.set_worker_id(worker_id);
  req.set_role(role);
  v1::RegisterResponse resp;
  absl::Status st = FromGrpcStatus(stub_->RegisterWorker(&ctx, req, &resp));
  if (!st.ok()) return st;
  return resp;
}

absl::StatusOr<PulledTable> ParameterServerClient::Pull(
    const std::string& table, const std::string& worker_id,
    const std::vector<std::string>& names, v1::DType dtype,
    int64_t min_version) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  v1::PullRequest req;
  req.set_table(table);
  req.set_worker_id(worker_id);
  for (const std::string& n : names) req.add_tensors(n);
  req.set_dtype(dtype);
  req.set_min_version(min_version);
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
  absl::Status rpc = FromGrpcStatus(reader->Finish());
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
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
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
  absl::Status st = FromGrpcStatus(writer->Finish());
  if (!st.ok()) return st;
  return resp;
}

absl::StatusOr<v1::StateResponse> ParameterServerClient::GetState() {
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  v1::StateResponse resp;
  absl::Status st =
      FromGrpcStatus(stub_->GetState(&ctx, v1::StateRequest(), &resp));
  if (!st.ok()) return st;
  return resp;
}

}  // namespace paragan

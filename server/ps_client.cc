#include "server/ps_client.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "server/grpc_status.h"
#include "server/tensor_codec.h"

namespace paragan {

std::shared_ptr<grpc::Channel> ParameterServerClient::Connect(
    const std::string& target, int max_message_bytes) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(max_message_bytes);
  args.SetMaxSendMessageSize(max_message_bytes);
  return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(),
                                   args);
}

ParameterServerClient::ParameterServerClient(
    std::shared_ptr<grpc::Channel> channel, Options options)
    : options_(options), stub_(v1::ParameterServer::NewStub(channel)) {}

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
  auto reader = stub_->Pull(&ctx, req);
  ChunkAssembler assembler({});
  v1::TensorChunk chunk;
  absl::Status st;
  while (reader->Read(&chunk)) {
    if (st.ok()) st = assembler.Add(chunk);
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
    v1::DType dtype) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  v1::PushResponse resp;
  auto writer = stub_->Push(&ctx, &resp);
  bool ok = true;
  for (const PushTensor& t : tensors) {
    v1::TensorChunk header;
    header.set_table(table);
    header.set_tensor_name(t.name);
    for (int64_t d : t.shape) header.add_shape(d);
    header.set_base_version(base_version);
    header.set_worker_id(worker_id);
    header.set_kind(t.kind);
    ok = EmitTensorChunks(
        header, t.values, NumElements(t.shape), dtype, options_.chunk_bytes,
        [&](const v1::TensorChunk& c) { return writer->Write(c); });
    if (!ok) break;  // the server ended the call; Finish says why
  }
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

#include "server/parameter_server_service.h"

#include <chrono>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/tensor_codec.h"
#include "server/tensor_wire.h"

namespace paragan {

ParameterServerService::ParameterServerService(ShardHandler* handler)
    : handler_(handler) {
  // Registered by hand (as generated code does) so that Pull and Push can
  // take raw ByteBuffers while the other methods keep protobuf messages.
  // Every method checks the caller's token first, before any state.
  using grpc::internal::RpcMethod;
  using grpc::internal::RpcServiceMethod;
  using Self = ParameterServerService;
  AddMethod(new RpcServiceMethod(
      ParameterServerMethodPath("RegisterWorker"), RpcMethod::NORMAL_RPC,
      new grpc::internal::RpcMethodHandler<Self, v1::RegisterRequest,
                                           v1::RegisterResponse>(
          [](Self* self, grpc::ServerContext* ctx,
             const v1::RegisterRequest* req, v1::RegisterResponse* resp) {
            grpc::Status auth =
                self->handler_->auth().Check(*ctx, "RegisterWorker");
            if (!auth.ok()) return auth;
            return self->RegisterWorker(ctx, req, resp);
          },
          this)));
  AddMethod(new RpcServiceMethod(
      ParameterServerMethodPath("DeregisterWorker"), RpcMethod::NORMAL_RPC,
      new grpc::internal::RpcMethodHandler<Self, v1::DeregisterRequest,
                                           v1::DeregisterResponse>(
          [](Self* self, grpc::ServerContext* ctx,
             const v1::DeregisterRequest* req, v1::DeregisterResponse* resp) {
            grpc::Status auth =
                self->handler_->auth().Check(*ctx, "DeregisterWorker");
            if (!auth.ok()) return auth;
            return self->DeregisterWorker(ctx, req, resp);
          },
          this)));
  AddMethod(new RpcServiceMethod(
      ParameterServerMethodPath("Pull"), RpcMethod::SERVER_STREAMING,
      new grpc::internal::ServerStreamingHandler<Self, v1::PullRequest,
                                                 grpc::ByteBuffer>(
          [](Self* self, grpc::ServerContext* ctx, const v1::PullRequest* req,
             grpc::ServerWriter<grpc::ByteBuffer>* writer) {
            grpc::Status auth = self->handler_->auth().Check(*ctx, "Pull");
            if (!auth.ok()) return auth;
            return self->Pull(ctx, req, writer);
          },
          this)));
  AddMethod(new RpcServiceMethod(
      ParameterServerMethodPath("Push"), RpcMethod::CLIENT_STREAMING,
      new grpc::internal::ClientStreamingHandler<Self, grpc::ByteBuffer,
                                                 v1::PushResponse>(
          [](Self* self, grpc::ServerContext* ctx,
             grpc::ServerReader<grpc::ByteBuffer>* reader,
             v1::PushResponse* resp) {
            grpc::Status auth = self->handler_->auth().Check(*ctx, "Push");
            if (!auth.ok()) return auth;
            return self->Push(ctx, reader, resp);
          },
          this)));
  AddMethod(new RpcServiceMethod(
      ParameterServerMethodPath("GetState"), RpcMethod::NORMAL_RPC,
      new grpc::internal::RpcMethodHandler<Self, v1::StateRequest,
                                           v1::StateResponse>(
          [](Self* self, grpc::ServerContext* ctx, const v1::StateRequest* req,
             v1::StateResponse* resp) {
            grpc::Status auth = self->handler_->auth().Check(*ctx, "GetState");
            if (!auth.ok()) return auth;
            return self->GetState(ctx, req, resp);
          },
          this)));
}

grpc::Status ParameterServerService::RegisterWorker(
    grpc::ServerContext* /*context*/, const v1::RegisterRequest* request,
    v1::RegisterResponse* response) {
  absl::StatusOr<v1::RegisterResponse> r = handler_->Register(*request);
  if (!r.ok()) return ToGrpcStatus(r.status());
  *response = *std::move(r);
  return grpc::Status::OK;
}

grpc::Status ParameterServerService::DeregisterWorker(
    grpc::ServerContext* /*context*/, const v1::DeregisterRequest* request,
    v1::DeregisterResponse* response) {
  absl::StatusOr<v1::DeregisterResponse> r = handler_->Deregister(*request);
  if (!r.ok()) return ToGrpcStatus(r.status());
  *response = *std::move(r);
  return grpc::Status::OK;
}

grpc::Status ParameterServerService::Pull(
    grpc::ServerContext* context, const v1::PullRequest* request,
    grpc::ServerWriter<grpc::ByteBuffer>* writer) {
  absl::Time deadline = absl::InfiniteFuture();
  const auto ctx_deadline = context->deadline();
  if (ctx_deadline != std::chrono::system_clock::time_point::max()) {
    deadline = absl::FromChrono(ctx_deadline);
  }
  absl::StatusOr<ShardHandler::PullPlan> plan = handler_->PreparePull(
      *request, deadline, [context] { return context->IsCancelled(); });
  if (!plan.ok()) return ToGrpcStatus(plan.status());
  const SharedTableSnapshot& snap = plan->snapshot;
  ChunkWriter out(handler_->chunk_bytes(), [writer](const grpc::ByteBuffer& m) {
    return writer->Write(m);
  });
  for (const SharedTableTensor& t : snap.tensors) {
    v1::TensorChunk header;
    header.set_table(plan->table);
    header.set_tensor_name(t.spec.name);
    for (int64_t d : t.spec.shape) header.add_shape(d);
    header.set_base_version(snap.version);
    header.set_worker_id(request->worker_id());
    header.set_kind(t.spec.trainable ? v1::PARAMETER : v1::VALUE);
    if (!out.Add(header, t.values.get(), NumElements(t.spec.shape),
                 request->dtype(), t.values)) {
      return grpc::Status(grpc::StatusCode::CANCELLED, "client gone");
    }
  }
  if (!out.Flush()) {
    return grpc::Status(grpc::StatusCode::CANCELLED, "client gone");
  }
  handler_->RecordPull(plan->table, out.data_bytes());
  return grpc::Status::OK;
}

grpc::Status ParameterServerService::Push(
    grpc::ServerContext* /*context*/,
    grpc::ServerReader<grpc::ByteBuffer>* reader, v1::PushResponse* response) {
  ChunkAssembler::Options opts;
  opts.max_total_bytes = handler_->max_push_bytes();
  // Every chunk of a stream has the first one's table, worker and version
  // (ChunkAssembler checks), so the push is begun once.
  std::optional<ShardHandler::PushTarget> target;
  opts.validate_new_tensor = [&](const v1::TensorChunk& c) -> absl::Status {
    if (!target.has_value()) {
      absl::StatusOr<ShardHandler::PushTarget> t =
          handler_->BeginPush(c.table(), c.worker_id());
      if (!t.ok()) return t.status();
      target.emplace(*std::move(t));
    }
    return target->CheckTensor(
        c.tensor_name(), Shape(c.shape().begin(), c.shape().end()), c.kind());
  };
  ChunkAssembler assembler(opts);
  auto fail = [&](const absl::Status& st) {
    return ToGrpcStatus(handler_->RecordInvalidPush(
        assembler.table(), assembler.payload_bytes(), st));
  };
  grpc::ByteBuffer message;
  ChunkView view;
  while (reader->Read(&message)) {
    absl::Status st = AddMessage(message, &view, &assembler);
    if (!st.ok()) return fail(st);
  }
  absl::Status st = assembler.Finish();
  if (!st.ok()) return fail(st);
  TensorMap gradients, buffers;
  for (auto& [name, t] : assembler.tensors()) {
    (t.kind == v1::GRADIENT ? gradients : buffers)[name] = std::move(t.values);
  }
  if (!target.has_value()) {
    return fail(absl::InvalidArgumentError("a push with no tensors"));
  }
  absl::StatusOr<v1::PushResponse> r = handler_->ApplyPush(
      *target, assembler.base_version(), assembler.push_id(), gradients,
      buffers, assembler.payload_bytes());
  if (!r.ok()) return ToGrpcStatus(r.status());
  *response = *std::move(r);
  return grpc::Status::OK;
}

grpc::Status ParameterServerService::GetState(
    grpc::ServerContext* /*context*/, const v1::StateRequest* /*request*/,
    v1::StateResponse* response) {
  *response = handler_->GetState();
  return grpc::Status::OK;
}

}  // namespace paragan

#ifndef PARAGAN_SERVER_PARAMETER_SERVER_SERVICE_H_
#define PARAGAN_SERVER_PARAMETER_SERVER_SERVICE_H_

// The paragan.v1.ParameterServer gRPC service of one shard, over its
// ParameterTables (normally "G" and "D").

#include "grpcpp/grpcpp.h"
#include "proto/paragan.grpc.pb.h"
#include "server/shard_handler.h"

namespace paragan {

// The gRPC adapter over a ShardHandler (shard_handler.h: tables, checks,
// error mapping, leases, metrics).
//
// Pull and Push move TensorChunks as raw grpc::ByteBuffers (server/
// tensor_wire.h): pulled values leave from a snapshot without protobuf
// copies, pushed bytes are copied once, from gRPC's buffers into the
// gradient. The bytes are ordinary TensorChunk messages, so the generated
// paragan.v1.ParameterServer stubs work against this service unchanged.
class ParameterServerService final : public grpc::Service {
 public:
  // `handler` must outlive the service.
  explicit ParameterServerService(ShardHandler* handler);

  grpc::Status RegisterWorker(grpc::ServerContext* context,
                              const v1::RegisterRequest* request,
                              v1::RegisterResponse* response);
  grpc::Status DeregisterWorker(grpc::ServerContext* context,
                                const v1::DeregisterRequest* request,
                                v1::DeregisterResponse* response);
  grpc::Status Pull(grpc::ServerContext* context,
                    const v1::PullRequest* request,
                    grpc::ServerWriter<grpc::ByteBuffer>* writer);
  grpc::Status Push(grpc::ServerContext* context,
                    grpc::ServerReader<grpc::ByteBuffer>* reader,
                    v1::PushResponse* response);
  grpc::Status GetState(grpc::ServerContext* context,
                        const v1::StateRequest* request,
                        v1::StateResponse* response);

 private:
  ShardHandler* const handler_;
};

}  // namespace paragan

#endif  // PARAGAN_SERVER_PARAMETER_SERVER_SERVICE_H_

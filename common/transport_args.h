#ifndef PARAGAN_COMMON_TRANSPORT_ARGS_H_
#define PARAGAN_COMMON_TRANSPORT_ARGS_H_

// gRPC settings for channels that stream tables of tensors (parameter-server
// pulls and pushes), applied on both ends: servers call
// SetTensorTransportArgs(ServerBuilder*), and every client channel comes
// from ConnectTensorChannel (ParameterServerClient::Connect uses it), so the
// two sides cannot drift apart.

#include <memory>
#include <string>

#include "common/tls.h"
#include "grpcpp/channel.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/server_builder.h"
#include "grpcpp/support/channel_arguments.h"

namespace paragan {

// HTTP/2 stream window a receiver offers from the start. gRPC's default
// (64 KiB, grown by its bandwidth-delay probe, which sees almost no delay on
// fast links) keeps a sender waiting for window updates between messages;
// 8 MiB lets several 1 MB chunks be in flight. Measured with
// paragan_ps_bench (BENCHMARKS.md): push+pull 20-25% faster on loopback.
inline constexpr int kTensorStreamWindowBytes = 8 << 20;

// A client reconnects this quickly after its server comes back (a restarted
// shard): gRPC's default reconnect backoff grows to two minutes.
inline constexpr int kTensorReconnectInitialMs = 100;
inline constexpr int kTensorReconnectMaxMs = 1000;

inline void SetTensorTransportArgs(grpc::ChannelArguments* args) {
  args->SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, kTensorStreamWindowBytes);
}

inline void SetTensorTransportArgs(grpc::ServerBuilder* builder) {
  builder->AddChannelArgument(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES,
                              kTensorStreamWindowBytes);
}

// Everything a tensor-streaming client channel sets: message size limits
// (both directions), the stream window above and the quick reconnect.
inline grpc::ChannelArguments TensorChannelArguments(int max_message_bytes) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(max_message_bytes);
  args.SetMaxSendMessageSize(max_message_bytes);
  SetTensorTransportArgs(&args);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, kTensorReconnectInitialMs);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, kTensorReconnectInitialMs);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, kTensorReconnectMaxMs);
  return args;
}

// The one factory of tensor-streaming client channels, plaintext or TLS as
// `security` says (common/tls.h).
inline std::shared_ptr<grpc::Channel> ConnectTensorChannel(
    const std::string& target, int max_message_bytes,
    const ClientSecurity& security = {}) {
  grpc::ChannelArguments args = TensorChannelArguments(max_message_bytes);
  security.ApplyTo(&args);
  return grpc::CreateCustomChannel(target, security.ChannelCredentials(), args);
}

}  // namespace paragan

#endif  // PARAGAN_COMMON_TRANSPORT_ARGS_H_

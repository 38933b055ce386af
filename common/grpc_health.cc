#include "common/grpc_health.h"

#include <chrono>
#include <memory>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/support/channel_arguments.h"
#include "proto/health.grpc.pb.h"

namespace paragan {

void EnableHealthService(grpc::ServerBuilder* builder) {
  grpc::EnableDefaultHealthCheckService(true);
  builder->AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
}

void MarkServing(grpc::Server* server, absl::string_view service) {
  grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
  if (health != nullptr) {
    health->SetServingStatus(std::string(service), true);
  }
}

void MarkStopping(grpc::Server* server) {
  grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
  if (health != nullptr) health->Shutdown();
}

absl::string_view HealthStateName(HealthState state) {
  switch (state) {
    case HealthState::kServing:
      return "SERVING";
    case HealthState::kNotServing:
      return "NOT_SERVING";
    case HealthState::kUnknown:
      break;
  }
  return "UNKNOWN";
}

absl::StatusOr<HealthState> CheckHealth(const std::string& target,
                                        const ClientSecurity& security,
                                        const std::string& service,
                                        absl::Duration timeout) {
  grpc::ChannelArguments args;
  security.ApplyTo(&args);
  std::unique_ptr<grpc::health::v1::Health::Stub> stub =
      grpc::health::v1::Health::NewStub(grpc::CreateCustomChannel(
          target, security.ChannelCredentials(), args));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       absl::ToChronoMilliseconds(timeout));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  const grpc::Status status = stub->Check(&context, request, &response);
  if (!status.ok()) {
    const absl::Status s = security.Explain(FromGrpcStatus(status));
    return absl::Status(
        s.code(), absl::StrCat("health check of ", target,
                               service.empty() ? "" : " service ", service,
                               ": ", s.message()));
  }
  switch (response.status()) {
    case grpc::health::v1::HealthCheckResponse::SERVING:
      return HealthState::kServing;
    case grpc::health::v1::HealthCheckResponse::NOT_SERVING:
      return HealthState::kNotServing;
    default:
      return HealthState::kUnknown;
  }
}

}  // namespace paragan

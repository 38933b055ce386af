#ifndef PARAGAN_COMMON_GRPC_HEALTH_H_
#define PARAGAN_COMMON_GRPC_HEALTH_H_

// The standard gRPC health service (grpc.health.v1, proto/health.proto) on
// every ParaGAN server, for Kubernetes' native gRPC probes and for
// paragan_health (deploy/health). Servers use gRPC's built-in
// implementation; this file switches it on, names the service a server
// offers, and marks it NOT_SERVING while the server stops, so that a
// readiness probe takes the pod out of its Service before calls fail.
// Health calls need no bearer token (they reveal only up or down); under
// TLS they need the same handshake as every other call.

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/tls.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"

namespace paragan {

// Before `builder` builds its server: that server (and every one built
// afterwards in this process) serves grpc.health.v1 ("" SERVING once
// started). Also turns off SO_REUSEPORT on `builder`: with the health
// service's extra completion queue, gRPC 1.51 clones each listener, and the
// clone of a port-0 listener binds a second, random port nobody is told of.
void EnableHealthService(grpc::ServerBuilder* builder);

// `service` (e.g. "paragan.v1.ParameterServer") SERVING on `server`.
void MarkServing(grpc::Server* server, absl::string_view service);

// Every service of `server` NOT_SERVING from now on (open Watch calls end):
// call it first when a stop signal arrives.
void MarkStopping(grpc::Server* server);

enum class HealthState { kServing, kNotServing, kUnknown };

// "SERVING", "NOT_SERVING", "UNKNOWN".
absl::string_view HealthStateName(HealthState state);

// One Check call to `target` ("host:port") about `service` ("": the whole
// server). NotFound when the server does not know `service`; Unavailable
// or DeadlineExceeded (explained by `security`) when it cannot be reached
// within `timeout`.
absl::StatusOr<HealthState> CheckHealth(const std::string& target,
                                        const ClientSecurity& security,
                                        const std::string& service,
                                        absl::Duration timeout);

}  // namespace paragan

#endif  // PARAGAN_COMMON_GRPC_HEALTH_H_

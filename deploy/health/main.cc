// paragan_health: asks a ParaGAN server's grpc.health.v1 service whether it
// serves (common/grpc_health.h), like Kubernetes' native gRPC probe does.
// For containers and hosts without one: an exec probe, a start-up script,
// the image test. Exit status 0 when SERVING, 1 when NOT_SERVING or
// UNKNOWN, 2 when the server cannot be asked (unreachable, unknown service,
// bad flags); one line on stdout or stderr says which.
//
//   paragan_health --address=paragan-ps-0.paragan-ps:7070 \
//       --service=paragan.v1.ParameterServer

#include <iostream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/flags_usage.h"
#include "common/grpc_health.h"
#include "common/security_flags.h"

ABSL_FLAG(std::string, address, "", "Required: the server, host:port.");
ABSL_FLAG(std::string, service, "",
          "The service to ask about, e.g. paragan.v1.ParameterServer or "
          "paragan.v1.DataService; empty: the server as a whole.");
ABSL_FLAG(double, timeout_s, 2, "Seconds to wait for the answer.");

int main(int argc, char** argv) {
  paragan::SetUsage(
      "Asks a ParaGAN server's gRPC health service whether it serves. Exit "
      "0: SERVING, 1: not serving, 2: cannot ask. See deploy/health/main.cc.",
      "deploy/health/main.cc");
  absl::ParseCommandLine(argc, argv);
  const std::string address = absl::GetFlag(FLAGS_address);
  if (address.empty()) {
    std::cerr << "paragan_health: --address (host:port) is required"
              << std::endl;
    return 2;
  }
  const double timeout_s = absl::GetFlag(FLAGS_timeout_s);
  if (!(timeout_s > 0)) {
    std::cerr << "paragan_health: --timeout_s must be > 0, got " << timeout_s
              << std::endl;
    return 2;
  }
  absl::StatusOr<paragan::ClientSecurity> security =
      paragan::ClientSecurityFromFlags();
  if (!security.ok()) {
    std::cerr << "paragan_health: " << security.status() << std::endl;
    return 2;
  }
  const std::string service = absl::GetFlag(FLAGS_service);
  absl::StatusOr<paragan::HealthState> state = paragan::CheckHealth(
      address, *security, service, absl::Seconds(timeout_s));
  if (!state.ok()) {
    std::cerr << "paragan_health: " << state.status() << std::endl;
    return 2;
  }
  std::cout << address << (service.empty() ? "" : " ") << service << ": "
            << paragan::HealthStateName(*state) << std::endl;
  return *state == paragan::HealthState::kServing ? 0 : 1;
}

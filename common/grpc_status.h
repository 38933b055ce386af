#ifndef PARAGAN_COMMON_GRPC_STATUS_H_
#define PARAGAN_COMMON_GRPC_STATUS_H_

// absl::Status <-> grpc::Status. Both use the canonical code numbering.

#include <string>

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace paragan {

inline grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

inline absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      status.error_message());
}

}  // namespace paragan

#endif  // PARAGAN_COMMON_GRPC_STATUS_H_

#include "common/auth_flag.h"

#include "absl/flags/flag.h"
#include "common/auth.h"

ABSL_FLAG(std::string, auth_token_file, "",
          "A file holding the bearer token of this job's services (e.g. a "
          "mounted Kubernetes Secret; at least 16 bytes): servers require it "
          "on every call and data-plane connection, clients send it. Empty: "
          "no authentication. Metrics endpoints stay open and hold no tensor "
          "data.");

namespace paragan {

absl::StatusOr<std::string> AuthTokenFromFlag() {
  const std::string path = absl::GetFlag(FLAGS_auth_token_file);
  if (path.empty()) return std::string();
  return ReadAuthToken(path);
}

}  // namespace paragan

#ifndef PARAGAN_COMMON_AUTH_FLAG_H_
#define PARAGAN_COMMON_AUTH_FLAG_H_

// --auth_token_file, shared by every binary that serves or calls a ParaGAN
// service, so that one flag means the same everywhere.

#include <string>

#include "absl/flags/declare.h"
#include "absl/status/statusor.h"

ABSL_DECLARE_FLAG(std::string, auth_token_file);

namespace paragan {

// The token in --auth_token_file (common/auth.h: ReadAuthToken), or "" when
// the flag is empty (no authentication).
absl::StatusOr<std::string> AuthTokenFromFlag();

}  // namespace paragan

#endif  // PARAGAN_COMMON_AUTH_FLAG_H_

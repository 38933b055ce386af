#ifndef PARAGAN_COMMON_SECURITY_FLAGS_H_
#define PARAGAN_COMMON_SECURITY_FLAGS_H_

// --auth_token_file and the --tls_* flags, shared by every binary that
// serves or calls a ParaGAN service, so that each flag means the same
// everywhere (common/auth.h, common/tls.h).

#include <memory>
#include <string>

#include "absl/flags/declare.h"
#include "absl/status/statusor.h"
#include "common/tls.h"

ABSL_DECLARE_FLAG(std::string, auth_token_file);
ABSL_DECLARE_FLAG(std::string, tls_cert_file);
ABSL_DECLARE_FLAG(std::string, tls_key_file);
ABSL_DECLARE_FLAG(std::string, tls_ca_file);
ABSL_DECLARE_FLAG(std::string, tls_server_name);

namespace paragan {

// The token in --auth_token_file (common/auth.h: ReadAuthToken), or "" when
// the flag is empty (no authentication).
absl::StatusOr<std::string> AuthTokenFromFlag();

// The --tls_* flags.
TlsFiles TlsFilesFromFlags();

// A client's token and channel security from the flags.
absl::StatusOr<ClientSecurity> ClientSecurityFromFlags();

}  // namespace paragan

#endif  // PARAGAN_COMMON_SECURITY_FLAGS_H_

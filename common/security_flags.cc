#include "common/security_flags.h"

#include "absl/flags/flag.h"
#include "common/auth.h"

ABSL_FLAG(std::string, auth_token_file, "",
          "A file holding the bearer token of this job's services (e.g. a "
          "mounted Kubernetes Secret; at least 16 bytes): servers require it "
          "on every call and data-plane connection, clients send it. Empty: "
          "no authentication. Metrics endpoints stay open and hold no tensor "
          "data.");
ABSL_FLAG(std::string, tls_cert_file, "",
          "PEM certificate chain of this end. A server with it (and "
          "--tls_key_file) serves gRPC over TLS only and runs no plaintext "
          "data plane; a client presents it to servers requiring mutual TLS.");
ABSL_FLAG(std::string, tls_key_file, "",
          "PEM private key (unencrypted) of --tls_cert_file.");
ABSL_FLAG(std::string, tls_ca_file, "",
          "PEM CA certificates. A client: TLS on, servers' certificates must "
          "chain to these. A server: mutual TLS, every client must present a "
          "certificate chaining to these.");
ABSL_FLAG(std::string, tls_server_name, "",
          "Client only: the name servers' certificates must carry when it is "
          "not the host dialled (e.g. an IP address). Empty: the host.");

namespace paragan {

absl::StatusOr<std::string> AuthTokenFromFlag() {
  const std::string path = absl::GetFlag(FLAGS_auth_token_file);
  if (path.empty()) return std::string();
  return ReadAuthToken(path);
}

TlsFiles TlsFilesFromFlags() {
  return {absl::GetFlag(FLAGS_tls_cert_file), absl::GetFlag(FLAGS_tls_key_file),
          absl::GetFlag(FLAGS_tls_ca_file),
          absl::GetFlag(FLAGS_tls_server_name)};
}

absl::StatusOr<ClientSecurity> ClientSecurityFromFlags() {
  absl::StatusOr<std::string> token = AuthTokenFromFlag();
  if (!token.ok()) return token.status();
  return ClientSecurityFromFiles(TlsFilesFromFlags(), *std::move(token));
}

}  // namespace paragan

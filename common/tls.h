#ifndef PARAGAN_COMMON_TLS_H_
#define PARAGAN_COMMON_TLS_H_

// Transport security of every ParaGAN service: TLS for gRPC from PEM files
// (as Kubernetes Secrets are mounted), mutual TLS when the server is given a
// CA to verify clients with, and the client-side bundle (ClientSecurity) of
// everything a caller needs to reach a service: the channel credentials and
// the bearer token (common/auth.h).
//
// The shards' raw-TCP data plane (server/data_plane.h) has no TLS: with TLS
// on, servers do not start it and clients never dial it, so every tensor
// travels over gRPC/TLS.

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/support/channel_arguments.h"

namespace paragan {

// PEM files of one end. A server serves TLS when `cert_file` and `key_file`
// are set, and requires and verifies client certificates (mutual TLS) when
// `ca_file` is set too. A client uses TLS when `ca_file` (the roots its
// servers' certificates chain to) is set, and presents `cert_file` and
// `key_file` when they are set (for servers requiring mutual TLS).
struct TlsFiles {
  std::string cert_file;
  std::string key_file;
  std::string ca_file;
  // Client only: the name the server's certificate must carry, when it is not
  // the host of the address dialled (e.g. dialling an IP address).
  std::string server_name;

  bool empty() const {
    return cert_file.empty() && key_file.empty() && ca_file.empty() &&
           server_name.empty();
  }
  // A server's mode: "" (plaintext), "TLS", "TLS with client certificates".
  std::string ServerMode() const {
    if (cert_file.empty()) return "";
    return ca_file.empty() ? "TLS" : "TLS with client certificates";
  }
};

// What a client sends and how: every channel to a ParaGAN service is made
// with ChannelCredentials() and ApplyTo(args), every call carries auth_token.
struct ClientSecurity {
  std::string auth_token;  // common/auth.h; empty: none
  // Null: plaintext.
  std::shared_ptr<grpc::ChannelCredentials> tls;
  std::string tls_server_name;          // TlsFiles::server_name
  bool tls_client_certificate = false;  // presents one (mutual TLS)

  bool tls_on() const { return tls != nullptr; }
  // `status` of a call, with a hint at the likely TLS mismatch when gRPC's
  // words for it ("Socket closed", "Ssl handshake failed: ...") do not say
  // which flag to look at.
  absl::Status Explain(const absl::Status& status) const;
  // `tls`, or insecure credentials when TLS is off.
  std::shared_ptr<grpc::ChannelCredentials> ChannelCredentials() const;
  // Sets the channel arguments TLS needs (the server-name override).
  void ApplyTo(grpc::ChannelArguments* args) const;
};

// Credentials for a server's listening ports: insecure when `files` names no
// certificate. The files are read and checked now (each a readable PEM
// certificate or key, the key matching the certificate, the CA a certificate)
// so that a wrong file is an error naming it at start, not a failed handshake
// later. InvalidArgument naming the field otherwise (a key without a
// certificate, a server_name on a server).
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>>
ServerCredentialsFromFiles(const TlsFiles& files);

// The client side of `files` (checked as above), with `auth_token`.
absl::StatusOr<ClientSecurity> ClientSecurityFromFiles(const TlsFiles& files,
                                                       std::string auth_token);

}  // namespace paragan

#endif  // PARAGAN_COMMON_TLS_H_

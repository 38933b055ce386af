#ifndef PARAGAN_COMMON_LOCAL_CA_H_
#define PARAGAN_COMMON_LOCAL_CA_H_

// A throwaway certificate authority for one machine's job: the local
// launcher's `--tls` and the tests make one per run. Clusters bring their own
// certificates (deploy/tls/make_certs.sh makes a test set with `openssl`).

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/tls.h"

namespace paragan {

// The files WriteLocalCertificates writes into its directory.
struct LocalCertificates {
  std::string ca_cert;      // ca.pem: the roots both ends trust
  std::string server_cert;  // server.pem, server.key: every service's
  std::string server_key;
  std::string client_cert;  // client.pem, client.key: every client's
  std::string client_key;

  // Mutual TLS: servers verify clients against the CA.
  TlsFiles ServerFiles() const {
    return {server_cert, server_key, ca_cert, ""};
  }
  TlsFiles ClientFiles() const {
    return {client_cert, client_key, ca_cert, ""};
  }
};

// The paths WriteLocalCertificates(dir) writes.
LocalCertificates LocalCertificatesIn(const std::string& dir);

// A fresh CA (ECDSA P-256, valid a year), a server certificate for `hosts`
// (DNS names or IP addresses, as subjectAltNames) and a client certificate,
// all signed by it, written to `dir` (created, mode 0700; keys 0600). The CA's
// key is not kept: nothing else can be signed with it.
absl::StatusOr<LocalCertificates> WriteLocalCertificates(
    const std::string& dir,
    const std::vector<std::string>& hosts = {"localhost", "127.0.0.1", "::1"});

}  // namespace paragan

#endif  // PARAGAN_COMMON_LOCAL_CA_H_

#include "common/tls.h"

#include <openssl/pem.h>

#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/openssl_util.h"
#include "common/tensor_io.h"
#include "grpc/grpc_security_constants.h"

namespace paragan {
namespace {

using openssl::BioPtr;
using openssl::PkeyPtr;
using openssl::X509Ptr;

// What a PEM parse failed on, for a message.
std::string OpenSslError() { return openssl::TakeError("no PEM block found"); }

BioPtr MemoryBio(const std::string& pem) {
  return BioPtr(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

absl::StatusOr<std::string> ReadPem(const std::string& field,
                                    const std::string& path) {
  absl::StatusOr<std::string> pem = ReadFileToString(path);
  if (!pem.ok()) {
    return absl::Status(pem.status().code(),
                        absl::StrCat(field, ": ", pem.status().message()));
  }
  return pem;
}

// The first certificate of a PEM chain.
absl::StatusOr<X509Ptr> ParseCertificate(const std::string& field,
                                         const std::string& path,
                                         const std::string& pem) {
  auto bio = MemoryBio(pem);
  X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (cert == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, " ", path, " holds no PEM certificate (", OpenSslError(), ")"));
  }
  return cert;
}

// A certificate chain and its private key, checked to belong together.
absl::Status CheckKeyPair(const TlsFiles& files, const std::string& cert_pem,
                          const std::string& key_pem) {
  absl::StatusOr<X509Ptr> cert =
      ParseCertificate("tls_cert_file", files.cert_file, cert_pem);
  if (!cert.ok()) return cert.status();
  auto bio = MemoryBio(key_pem);
  PkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (key == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tls_key_file ", files.key_file,
        " holds no unencrypted PEM private key (", OpenSslError(), ")"));
  }
  if (X509_check_private_key(cert->get(), key.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        absl::StrCat("tls_key_file ", files.key_file,
                     " is not the key of the certificate in tls_cert_file ",
                     files.cert_file));
  }
  return absl::OkStatus();
}

struct KeyPair {
  std::string cert_pem;
  std::string key_pem;
};

// The pair in `files`, read and checked; empty when neither file is named.
absl::StatusOr<KeyPair> ReadKeyPair(const TlsFiles& files) {
  if (files.cert_file.empty() != files.key_file.empty()) {
    return absl::InvalidArgumentError(
        "tls_cert_file and tls_key_file go together: set both or neither");
  }
  KeyPair pair;
  if (files.cert_file.empty()) return pair;
  absl::StatusOr<std::string> cert = ReadPem("tls_cert_file", files.cert_file);
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key = ReadPem("tls_key_file", files.key_file);
  if (!key.ok()) return key.status();
  if (absl::Status st = CheckKeyPair(files, *cert, *key); !st.ok()) return st;
  pair.cert_pem = *std::move(cert);
  pair.key_pem = *std::move(key);
  return pair;
}

absl::StatusOr<std::string> ReadCa(const TlsFiles& files) {
  if (files.ca_file.empty()) return std::string();
  absl::StatusOr<std::string> ca = ReadPem("tls_ca_file", files.ca_file);
  if (!ca.ok()) return ca.status();
  if (absl::StatusOr<X509Ptr> c =
          ParseCertificate("tls_ca_file", files.ca_file, *ca);
      !c.ok()) {
    return c.status();
  }
  return ca;
}

}  // namespace

std::shared_ptr<grpc::ChannelCredentials> ClientSecurity::ChannelCredentials()
    const {
  return tls != nullptr ? tls : grpc::InsecureChannelCredentials();
}

absl::Status ClientSecurity::Explain(const absl::Status& status) const {
  const absl::string_view m = status.message();
  const char* hint = nullptr;
  if (absl::StrContains(m, "Socket closed")) {
    hint = !tls_on() ? "the server may require TLS: give --tls_ca_file"
           : !tls_client_certificate
               ? "the server may require a client certificate (mutual "
                 "TLS): give --tls_cert_file and --tls_key_file"
               : "the server may not accept this client certificate: is it "
                 "signed by the CA in the server's --tls_ca_file?";
  } else if (absl::StrContains(m, "Ssl handshake failed")) {
    if (absl::StrContains(m, "wrong version number")) {
      hint =
          "the server does not serve TLS: drop --tls_ca_file, or give the "
          "server --tls_cert_file and --tls_key_file";
    } else if (absl::StrContains(m, "certificate verify failed")) {
      hint = "the server's certificate does not chain to --tls_ca_file";
    }
  } else if (tls_on() && absl::StrContains(m, "Peer name")) {
    hint =
        "the server's certificate does not name the host dialled: "
        "--tls_server_name";
  }
  if (hint == nullptr) return status;
  return absl::Status(status.code(), absl::StrCat(m, " (", hint, ")"));
}

void ClientSecurity::ApplyTo(grpc::ChannelArguments* args) const {
  if (tls != nullptr && !tls_server_name.empty()) {
    args->SetSslTargetNameOverride(tls_server_name);
  }
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>>
ServerCredentialsFromFiles(const TlsFiles& files) {
  if (!files.server_name.empty()) {
    return absl::InvalidArgumentError(
        "tls_server_name is for clients: a server's name is in its "
        "certificate");
  }
  absl::StatusOr<KeyPair> pair = ReadKeyPair(files);
  if (!pair.ok()) return pair.status();
  absl::StatusOr<std::string> ca = ReadCa(files);
  if (!ca.ok()) return ca.status();
  if (pair->cert_pem.empty()) {
    if (!ca->empty()) {
      return absl::InvalidArgumentError(
          "tls_ca_file on a server verifies client certificates (mutual "
          "TLS) and needs the server's own tls_cert_file and tls_key_file");
    }
    return grpc::InsecureServerCredentials();
  }
  grpc::SslServerCredentialsOptions options(
      ca->empty() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                  : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  options.pem_root_certs = *std::move(ca);
  options.pem_key_cert_pairs.push_back(
      {std::move(pair->key_pem), std::move(pair->cert_pem)});
  return grpc::SslServerCredentials(options);
}

absl::StatusOr<ClientSecurity> ClientSecurityFromFiles(const TlsFiles& files,
                                                       std::string auth_token) {
  ClientSecurity security;
  security.auth_token = std::move(auth_token);
  absl::StatusOr<KeyPair> pair = ReadKeyPair(files);
  if (!pair.ok()) return pair.status();
  absl::StatusOr<std::string> ca = ReadCa(files);
  if (!ca.ok()) return ca.status();
  if (ca->empty()) {
    if (!pair->cert_pem.empty() || !files.server_name.empty()) {
      return absl::InvalidArgumentError(
          "a client uses TLS only with tls_ca_file (the roots its servers' "
          "certificates chain to); tls_cert_file, tls_key_file and "
          "tls_server_name need it");
    }
    return security;
  }
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = *std::move(ca);
  options.pem_private_key = std::move(pair->key_pem);
  options.pem_cert_chain = std::move(pair->cert_pem);
  security.tls_client_certificate = !options.pem_cert_chain.empty();
  security.tls = grpc::SslCredentials(options);
  security.tls_server_name = files.server_name;
  return security;
}

}  // namespace paragan

#include "common/local_ca.h"

#include <arpa/inet.h>
#include <openssl/bn.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/openssl_util.h"
#include "common/tensor_io.h"

namespace paragan {
namespace {

constexpr long kValiditySeconds = 365L * 24 * 3600;

using openssl::BioPtr;
using openssl::PkeyPtr;
using openssl::X509Ptr;

absl::Status OpenSslFailure(const std::string& what) {
  return absl::InternalError(absl::StrCat("local CA: ", what, ": ",
                                          openssl::TakeError("unknown error")));
}

bool IsIpAddress(const std::string& host) {
  unsigned char buf[16];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 ||
         inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

bool AddExtension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (ext == nullptr) return false;
  const bool ok = X509_add_ext(cert, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok;
}

struct Extension {
  int nid;
  std::string value;
};

// A certificate for `key` named `common_name`, signed by `issuer_key` (the
// issuer's certificate `issuer`, or itself when null).
absl::StatusOr<X509Ptr> MakeCertificate(EVP_PKEY* key,
                                        const std::string& common_name,
                                        X509* issuer, EVP_PKEY* issuer_key,
                                        const std::vector<Extension>& exts) {
  X509Ptr cert(X509_new());
  if (cert == nullptr) return OpenSslFailure("X509_new");
  unsigned char serial[16];
  if (RAND_bytes(serial, sizeof(serial)) != 1) {
    return OpenSslFailure("random serial");
  }
  serial[0] &= 0x7f;  // positive
  BIGNUM* bn = BN_bin2bn(serial, sizeof(serial), nullptr);
  const bool serial_ok =
      bn != nullptr &&
      BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get())) != nullptr;
  BN_free(bn);
  if (!serial_ok) return OpenSslFailure("serial number");
  X509_NAME* name = X509_get_subject_name(cert.get());
  if (X509_set_version(cert.get(), 2) != 1 ||
      X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600) == nullptr ||
      X509_gmtime_adj(X509_getm_notAfter(cert.get()), kValiditySeconds) ==
          nullptr ||
      X509_set_pubkey(cert.get(), key) != 1 ||
      X509_NAME_add_entry_by_txt(
          name, "CN", MBSTRING_UTF8,
          reinterpret_cast<const unsigned char*>(common_name.c_str()), -1, -1,
          0) != 1 ||
      X509_set_issuer_name(cert.get(), issuer != nullptr
                                           ? X509_get_subject_name(issuer)
                                           : name) != 1) {
    return OpenSslFailure("certificate fields");
  }
  X509* issuer_cert = issuer != nullptr ? issuer : cert.get();
  for (const Extension& e : exts) {
    if (!AddExtension(cert.get(), issuer_cert, e.nid, e.value)) {
      return OpenSslFailure(absl::StrCat("extension ", e.value));
    }
  }
  if (X509_sign(cert.get(), issuer_key, EVP_sha256()) == 0) {
    return OpenSslFailure("signing");
  }
  return cert;
}

absl::StatusOr<std::string> CertificatePem(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr || PEM_write_bio_X509(bio.get(), cert) != 1) {
    return OpenSslFailure("PEM certificate");
  }
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, n);
}

absl::StatusOr<std::string> KeyPem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr ||
      PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr,
                               nullptr) != 1) {
    return OpenSslFailure("PEM key");
  }
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, n);
}

absl::StatusOr<PkeyPtr> NewKey() {
  PkeyPtr key(EVP_EC_gen("P-256"));
  if (key == nullptr) return OpenSslFailure("P-256 key");
  return key;
}

// A leaf certificate and key under the CA, written to the paths given.
absl::Status WriteLeaf(const std::string& cert_path,
                       const std::string& key_path,
                       const std::string& common_name, X509* ca,
                       EVP_PKEY* ca_key, std::vector<Extension> exts) {
  absl::StatusOr<PkeyPtr> key = NewKey();
  if (!key.ok()) return key.status();
  exts.push_back({NID_basic_constraints, "critical,CA:FALSE"});
  exts.push_back({NID_key_usage, "critical,digitalSignature"});
  exts.push_back({NID_subject_key_identifier, "hash"});
  exts.push_back({NID_authority_key_identifier, "keyid"});
  absl::StatusOr<X509Ptr> cert =
      MakeCertificate(key->get(), common_name, ca, ca_key, exts);
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> cert_pem = CertificatePem(cert->get());
  if (!cert_pem.ok()) return cert_pem.status();
  absl::StatusOr<std::string> key_pem = KeyPem(key->get());
  if (!key_pem.ok()) return key_pem.status();
  if (absl::Status st = WriteFileAtomically(key_path, *key_pem, true);
      !st.ok()) {
    return st;
  }
  return WriteFileAtomically(cert_path, *cert_pem);
}

}  // namespace

LocalCertificates LocalCertificatesIn(const std::string& dir) {
  LocalCertificates c;
  c.ca_cert = dir + "/ca.pem";
  c.server_cert = dir + "/server.pem";
  c.server_key = dir + "/server.key";
  c.client_cert = dir + "/client.pem";
  c.client_key = dir + "/client.key";
  return c;
}

absl::StatusOr<LocalCertificates> WriteLocalCertificates(
    const std::string& dir, const std::vector<std::string>& hosts) {
  if (hosts.empty()) {
    return absl::InvalidArgumentError("local CA: no host names to certify");
  }
  if (absl::Status st = MakeOwnerOnlyDirectory(dir); !st.ok()) {
    return absl::Status(st.code(), absl::StrCat("local CA: ", st.message()));
  }
  absl::StatusOr<PkeyPtr> ca_key = NewKey();
  if (!ca_key.ok()) return ca_key.status();
  absl::StatusOr<X509Ptr> ca =
      MakeCertificate(ca_key->get(), "ParaGAN local CA", nullptr, ca_key->get(),
                      {{NID_basic_constraints, "critical,CA:TRUE,pathlen:0"},
                       {NID_key_usage, "critical,keyCertSign,cRLSign"},
                       {NID_subject_key_identifier, "hash"}});
  if (!ca.ok()) return ca.status();
  absl::StatusOr<std::string> ca_pem = CertificatePem(ca->get());
  if (!ca_pem.ok()) return ca_pem.status();

  const LocalCertificates out = LocalCertificatesIn(dir);
  if (absl::Status st = WriteFileAtomically(out.ca_cert, *ca_pem); !st.ok()) {
    return st;
  }
  std::vector<std::string> names;
  for (const std::string& h : hosts) {
    names.push_back(absl::StrCat(IsIpAddress(h) ? "IP:" : "DNS:", h));
  }
  if (absl::Status st =
          WriteLeaf(out.server_cert, out.server_key, hosts.front(), ca->get(),
                    ca_key->get(),
                    {{NID_subject_alt_name, absl::StrJoin(names, ",")},
                     {NID_ext_key_usage, "serverAuth"}});
      !st.ok()) {
    return st;
  }
  if (absl::Status st = WriteLeaf(out.client_cert, out.client_key,
                                  "ParaGAN client", ca->get(), ca_key->get(),
                                  {{NID_ext_key_usage, "clientAuth"}});
      !st.ok()) {
    return st;
  }
  return out;
}

}  // namespace paragan

#ifndef PARAGAN_COMMON_OPENSSL_UTIL_H_
#define PARAGAN_COMMON_OPENSSL_UTIL_H_

// What the code calling libcrypto directly (tls.cc, local_ca.cc) shares:
// owning pointers and OpenSSL's error queue as text.

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <memory>
#include <string>

namespace paragan::openssl {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

// OpenSSL's most recent error as text, or `if_none` when the queue is
// empty; the queue is cleared, so a later failure does not report this one.
inline std::string TakeError(const char* if_none) {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return if_none;
  char buf[256];
  ERR_error_string_n(code, buf, sizeof(buf));
  return buf;
}

}  // namespace paragan::openssl

#endif  // PARAGAN_COMMON_OPENSSL_UTIL_H_

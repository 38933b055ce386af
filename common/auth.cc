#include "common/auth.h"

#include <fcntl.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <iostream>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/log_limit.h"
#include "common/tensor_io.h"

namespace paragan {
namespace {

constexpr absl::string_view kBearer = "Bearer ";

}  // namespace

absl::StatusOr<std::string> ReadAuthToken(const std::string& path) {
  absl::StatusOr<std::string> contents = ReadFileToString(path);
  if (!contents.ok()) {
    return absl::Status(
        contents.status().code(),
        absl::StrCat("the auth token file: ", contents.status().message()));
  }
  std::string token = *std::move(contents);
  while (!token.empty() &&
         std::isspace(static_cast<unsigned char>(token.back()))) {
    token.pop_back();
  }
  if (token.size() < kMinAuthTokenBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("the auth token in ", path, " has ", token.size(),
                     " bytes; at least ", kMinAuthTokenBytes,
                     " are needed (e.g. openssl rand -hex 32 > ", path, ")"));
  }
  for (unsigned char c : token) {
    if (c <= 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError(
          absl::StrCat("the auth token in ", path,
                       " holds whitespace or a control character"));
    }
  }
  return token;
}

absl::StatusOr<std::string> GenerateAuthToken() {
  const int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::UnavailableError(
        absl::StrCat("/dev/urandom: ", std::strerror(errno)));
  }
  char bytes[32];
  size_t got = 0;
  while (got < sizeof(bytes)) {
    const ssize_t n = read(fd, bytes + got, sizeof(bytes) - got);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      close(fd);
      return absl::UnavailableError("/dev/urandom: short read");
    }
    got += static_cast<size_t>(n);
  }
  close(fd);
  return absl::BytesToHexString(absl::string_view(bytes, sizeof(bytes)));
}

bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  // Every byte of `b` is read whatever `a` is: the time tells the length of
  // what the caller sent, nothing about the secret's contents.
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < b.size(); ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    diff |= x ^ static_cast<unsigned char>(b[i]);
  }
  return diff == 0;
}

void AddAuthMetadata(const std::string& token, grpc::ClientContext* context) {
  if (!token.empty()) {
    context->AddMetadata(kAuthMetadataKey, absl::StrCat(kBearer, token));
  }
}

grpc::Status CallAuthenticator::Check(const grpc::ServerContext& context,
                                      absl::string_view method) const {
  if (!enabled()) return grpc::Status::OK;
  const auto& metadata = context.client_metadata();
  auto range = metadata.equal_range(kAuthMetadataKey);
  absl::Status st;
  if (range.first == range.second) {
    st = Refuse("no bearer token", context.peer(), method);
  } else {
    const absl::string_view value(range.first->second.data(),
                                  range.first->second.size());
    if (std::next(range.first) != range.second) {
      st = Refuse("more than one authorization header", context.peer(), method);
    } else if (!absl::StartsWith(value, kBearer)) {
      st = Refuse("an authorization header that is not a bearer token",
                  context.peer(), method);
    } else {
      st = CheckToken(value.substr(kBearer.size()), context.peer(), method);
    }
  }
  if (st.ok()) return grpc::Status::OK;
  return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                      std::string(st.message()));
}

absl::Status CallAuthenticator::CheckToken(absl::string_view presented,
                                           absl::string_view peer,
                                           absl::string_view what) const {
  if (!enabled() || ConstantTimeEquals(presented, token_)) {
    return absl::OkStatus();
  }
  return Refuse("a wrong bearer token", peer, what);
}

absl::Status CallAuthenticator::Refuse(absl::string_view why,
                                       absl::string_view peer,
                                       absl::string_view what) const {
  const int64_t n = refused_.fetch_add(1) + 1;
  if (ShouldLogOccurrence(n)) {
    std::cerr << service_ << ": refused " << what << " from " << peer << ": "
              << why << " (" << n << " refused so far)" << std::endl;
  }
  return absl::UnauthenticatedError(absl::StrCat(
      service_, " requires a bearer token (--auth_token_file): ", why));
}

}  // namespace paragan

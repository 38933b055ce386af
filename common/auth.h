#ifndef PARAGAN_COMMON_AUTH_H_
#define PARAGAN_COMMON_AUTH_H_

// Bearer-token authentication of every ParaGAN service. The token is a
// shared secret read from a file (as a Kubernetes Secret is mounted); clients
// send it with every gRPC call as "authorization: Bearer <token>" metadata
// and as the first frame of every data-plane connection; servers compare it
// in constant time and refuse anything else with UNAUTHENTICATED, before the
// call reads or changes any state. An empty token turns authentication off
// (the default, for a single machine or a trusted network).

#include <atomic>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "grpcpp/client_context.h"
#include "grpcpp/server_context.h"

namespace paragan {

inline constexpr char kAuthMetadataKey[] = "authorization";
inline constexpr size_t kMinAuthTokenBytes = 16;

// The token in `path`: the file's contents without trailing whitespace (a
// newline from `echo`). InvalidArgument naming the file when that is shorter
// than kMinAuthTokenBytes or holds whitespace or control characters;
// ReadFileToString's error (NotFound, ...) when it cannot be read.
absl::StatusOr<std::string> ReadAuthToken(const std::string& path);

// 32 random bytes from the kernel, as 64 hex digits.
absl::StatusOr<std::string> GenerateAuthToken();

// Equality whose running time depends on the lengths only, not on where
// the strings differ.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b);

// Adds the token to a call (nothing when `token` is empty).
void AddAuthMetadata(const std::string& token, grpc::ClientContext* context);

// The server side of one service. Thread-safe.
class CallAuthenticator {
 public:
  // `service` names the server in log lines ("paragan_server shard 1").
  CallAuthenticator(std::string token, std::string service)
      : token_(std::move(token)), service_(std::move(service)) {}

  bool enabled() const { return !token_.empty(); }
  // OK, or UNAUTHENTICATED for a call without the right bearer token
  // (logged, rate-limited: a stranger cannot flood the log).
  grpc::Status Check(const grpc::ServerContext& context,
                     absl::string_view method) const;
  // The same for a token that arrived another way (the data plane's first
  // frame); `peer` and `what` name the caller and the call in the log.
  absl::Status CheckToken(absl::string_view presented, absl::string_view peer,
                          absl::string_view what) const;
  // Counts, logs (rate-limited) and returns the UNAUTHENTICATED error for a
  // caller refused for `why`.
  absl::Status Refuse(absl::string_view why, absl::string_view peer,
                      absl::string_view what) const;
  // Calls refused so far.
  int64_t refused() const { return refused_.load(); }

 private:
  const std::string token_;
  const std::string service_;
  mutable std::atomic<int64_t> refused_{0};
};

}  // namespace paragan

#endif  // PARAGAN_COMMON_AUTH_H_

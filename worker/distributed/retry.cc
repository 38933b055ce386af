#include "worker/distributed/retry.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace paragan {

bool IsRetryable(const absl::Status& status) {
  return status.code() == absl::StatusCode::kUnavailable ||
         status.code() == absl::StatusCode::kDeadlineExceeded;
}

absl::Duration BackoffFor(const RetryPolicy& policy, int attempt) {
  absl::Duration d = policy.initial_backoff;
  for (int i = 1; i < attempt && d < policy.max_backoff; ++i) d *= 2;
  return std::min(d, policy.max_backoff);
}

absl::Status CallWithRetry(
    const RetryPolicy& policy, const std::string& what,
    const std::function<absl::Status()>& attempt, const std::atomic<bool>* stop,
    const std::function<void(const absl::Status&, int)>& on_retry,
    const RetryEnv& env) {
  const absl::Time start = env.now();
  for (int retry = 1;; ++retry) {
    absl::Status st = attempt();
    if (!IsRetryable(st)) return st;
    const absl::Duration wait = BackoffFor(policy, retry);
    const absl::Duration spent = env.now() - start;
    if (spent + wait > policy.max_total) {
      return absl::Status(
          st.code(),
          absl::StrCat(what, ": giving up after ", absl::FormatDuration(spent),
                       " and ", retry, " attempts: ", st.message()));
    }
    if (on_retry) on_retry(st, retry);
    // Sleep in slices so a stop request is seen promptly.
    absl::Duration left = wait;
    while (left > absl::ZeroDuration()) {
      if (stop != nullptr && stop->load()) {
        return absl::CancelledError(absl::StrCat(what, ": stopped"));
      }
      const absl::Duration slice = std::min(left, absl::Milliseconds(50));
      env.sleep(slice);
      left -= slice;
    }
    if (stop != nullptr && stop->load()) {
      return absl::CancelledError(absl::StrCat(what, ": stopped"));
    }
  }
}

}  // namespace paragan

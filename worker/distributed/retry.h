#ifndef PARAGAN_WORKER_DISTRIBUTED_RETRY_H_
#define PARAGAN_WORKER_DISTRIBUTED_RETRY_H_

// Retries of RPCs to the parameter servers: UNAVAILABLE and
// DEADLINE_EXCEEDED are retried with exponential backoff (100 ms doubling to
// 2 s by default) until max_seconds have passed since the first attempt;
// every other status is returned at once.

#include <atomic>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace paragan {

struct RetryPolicy {
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(2);
  absl::Duration max_total = absl::Seconds(60);
};

// Whether `status` is worth another attempt (the server may come back).
bool IsRetryable(const absl::Status& status);

// The wait before attempt number `attempt` (1 = the first retry):
// initial * 2^(attempt-1), capped at max_backoff.
absl::Duration BackoffFor(const RetryPolicy& policy, int attempt);

// Clock and sleep, replaceable in tests.
struct RetryEnv {
  std::function<absl::Time()> now = [] { return absl::Now(); };
  std::function<void(absl::Duration)> sleep = [](absl::Duration d) {
    absl::SleepFor(d);
  };
};

// Calls `attempt` until it returns a non-retryable status (returned as is) or
// the time since the first attempt would pass policy.max_total (then a
// status of the last attempt's code whose message names `what`, the time
// spent and the last error). `on_retry(status, attempt)` runs before each
// wait. Stops early with CANCELLED when *stop becomes true.
absl::Status CallWithRetry(
    const RetryPolicy& policy, const std::string& what,
    const std::function<absl::Status()>& attempt,
    const std::atomic<bool>* stop = nullptr,
    const std::function<void(const absl::Status&, int)>& on_retry = nullptr,
    const RetryEnv& env = RetryEnv());

}  // namespace paragan

#endif  // PARAGAN_WORKER_DISTRIBUTED_RETRY_H_

#ifndef PARAGAN_COMMON_WAIT_FOR_H_
#define PARAGAN_COMMON_WAIT_FOR_H_

// Polls a condition another thread makes true (tests and fuzz harnesses
// waiting for a server's threads).

#include <functional>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace paragan {

// Whether `done` held within `timeout`, checked every `poll`.
inline bool WaitFor(const std::function<bool()>& done,
                    absl::Duration timeout = absl::Seconds(10),
                    absl::Duration poll = absl::Milliseconds(5)) {
  const absl::Time end = absl::Now() + timeout;
  while (absl::Now() < end) {
    if (done()) return true;
    absl::SleepFor(poll);
  }
  return done();
}

}  // namespace paragan

#endif  // PARAGAN_COMMON_WAIT_FOR_H_

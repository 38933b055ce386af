#ifndef PARAGAN_WORKER_EVAL_BACKGROUND_PRIORITY_H_
#define PARAGAN_WORKER_EVAL_BACKGROUND_PRIORITY_H_

// How an evaluator's scoring thread yields the CPU to training on a shared
// machine. Linux scheduling attributes are per thread, so only the calling
// thread (and threads it creates later) changes.

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace paragan::eval {

enum class BackgroundPriority {
  kNormal,  // unchanged
  kNice,    // nice 19: still a weighted share when every core is busy
  kIdle,    // SCHED_IDLE: runs only on cycles nothing else wants, and any
            // waking task preempts it at once
};

absl::StatusOr<BackgroundPriority> ParseBackgroundPriority(
    const std::string& name);  // "normal" | "nice" | "idle"
std::string BackgroundPriorityName(BackgroundPriority p);

// Applies `p` to the calling thread; an error says what the kernel refused.
absl::Status RunThisThreadAt(BackgroundPriority p);

}  // namespace paragan::eval

#endif  // PARAGAN_WORKER_EVAL_BACKGROUND_PRIORITY_H_

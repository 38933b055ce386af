#ifndef PARAGAN_WORKER_EVAL_BACKGROUND_PRIORITY_H_
#define PARAGAN_WORKER_EVAL_BACKGROUND_PRIORITY_H_

// How an evaluator's scoring thread yields the CPU to training on a shared
// machine. Linux scheduling attributes are per thread, so only the calling
// thread (and threads it creates later) changes.

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

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

// One evaluation round's priority on the calling thread: `p` at first and,
// for an idle round that has run `escalate_after_s` (> 0), nice 19 under the
// normal policy until it ends. On a box whose every core trains (spinning OpenMP
// threads never leave a core idle), SCHED_IDLE can starve a round forever;
// this bounds the wait for a number at the cost of one nice-19 round now
// and then. The destructor puts the thread back to `p`.
class RoundPriority {
 public:
  RoundPriority(BackgroundPriority p, double escalate_after_s);
  ~RoundPriority();
  RoundPriority(const RoundPriority&) = delete;
  RoundPriority& operator=(const RoundPriority&) = delete;
  bool escalated() const { return escalated_.load(); }

 private:
  const BackgroundPriority p_;
  const int tid_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;  // guarded by mu_
  std::atomic<bool> escalated_{false};
  std::thread watchdog_;
};

}  // namespace paragan::eval

#endif  // PARAGAN_WORKER_EVAL_BACKGROUND_PRIORITY_H_

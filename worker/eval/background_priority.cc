#include "worker/eval/background_priority.h"

#include <errno.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace paragan::eval {

absl::StatusOr<BackgroundPriority> ParseBackgroundPriority(
    const std::string& name) {
  if (name == "normal") return BackgroundPriority::kNormal;
  if (name == "nice") return BackgroundPriority::kNice;
  if (name == "idle") return BackgroundPriority::kIdle;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown priority '", name, "' (normal | nice | idle)"));
}

std::string BackgroundPriorityName(BackgroundPriority p) {
  switch (p) {
    case BackgroundPriority::kNormal:
      return "normal";
    case BackgroundPriority::kNice:
      return "nice";
    case BackgroundPriority::kIdle:
      return "idle";
  }
  return "?";
}

absl::Status RunThisThreadAt(BackgroundPriority p) {
  const pid_t tid = static_cast<pid_t>(syscall(SYS_gettid));
  if (p == BackgroundPriority::kNormal) return absl::OkStatus();
  if (p == BackgroundPriority::kNice) {
    if (setpriority(PRIO_PROCESS, static_cast<id_t>(tid), 19) != 0)
      return absl::PermissionDeniedError(
          absl::StrCat("setpriority(19): ", std::strerror(errno)));
    return absl::OkStatus();
  }
  sched_param param{};
  param.sched_priority = 0;
  if (sched_setscheduler(tid, SCHED_IDLE, &param) != 0)
    return absl::PermissionDeniedError(
        absl::StrCat("sched_setscheduler(SCHED_IDLE): ", std::strerror(errno)));
  return absl::OkStatus();
}

RoundPriority::RoundPriority(BackgroundPriority p, double escalate_after_s)
    : p_(p), tid_(static_cast<int>(syscall(SYS_gettid))) {
  (void)RunThisThreadAt(p_);  // the caller reported failures at start-up
  // Only idle rounds can starve: a nice round already is what escalation
  // would make it.
  if (p_ != BackgroundPriority::kIdle || escalate_after_s <= 0) return;
  watchdog_ = std::thread([this, escalate_after_s] {
    std::unique_lock<std::mutex> lock(mu_);
    if (cv_.wait_for(lock,
                     std::chrono::duration<double>(escalate_after_s),
                     [this] { return done_; }))
      return;
    // Nice first: raising it is always allowed, and an unprivileged thread
    // may leave SCHED_IDLE only for a nice value its RLIMIT_NICE permits.
    setpriority(PRIO_PROCESS, static_cast<id_t>(tid_), 19);
    sched_param param{};
    if (sched_setscheduler(tid_, SCHED_OTHER, &param) != 0)
      return;  // stays idle: nothing better is allowed
    escalated_.store(true);
  });
}

RoundPriority::~RoundPriority() {
  if (watchdog_.joinable()) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    watchdog_.join();
  }
  if (escalated_.load()) (void)RunThisThreadAt(p_);
}

}  // namespace paragan::eval

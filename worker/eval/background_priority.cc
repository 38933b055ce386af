#include "worker/eval/background_priority.h"

#include <errno.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

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

}  // namespace paragan::eval

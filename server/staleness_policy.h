#ifndef PARAGAN_SERVER_STALENESS_POLICY_H_
#define PARAGAN_SERVER_STALENESS_POLICY_H_

// What a table does with a gradient computed from an older version: refuse
// it, or apply it with a smaller learning rate (asynchronous) or weight
// (synchronous round). A policy is a stateless object chosen by name
// (--staleness_policy); the table asks it once per push, under its lock.
//
// Adding a policy: one file (server/staleness_<name>.cc, defining
// `const StalenessPolicy& <Name>Policy()`) and one line in
// PARAGAN_STALENESS_POLICIES (staleness_policy.cc).

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace paragan {

struct StalenessDecision {
  bool accept = true;
  std::string reason;  // why refused (shown to the worker)
  // Asynchronous: the step's learning rate is lr / lr_divisor (divided, not
  // multiplied by a reciprocal, so the step is exactly Adam with that rate).
  float lr_divisor = 1.0f;
  // Synchronous: the gradient counts into the round's sum times this.
  float round_weight = 1.0f;
};

class StalenessPolicy {
 public:
  virtual ~StalenessPolicy() = default;
  // The name --staleness_policy takes, e.g. "reject_above_bound".
  virtual absl::string_view name() const = 0;
  // Other names accepted for it (short forms).
  virtual std::vector<absl::string_view> aliases() const { return {}; }
  // For a gradient `staleness` (>= 0) versions old; `bound` is the table's
  // staleness_bound. Must be a pure function of its arguments.
  virtual StalenessDecision Decide(int64_t staleness, int64_t bound) const = 0;
};

// The registered policy called `name` (or one of its aliases); an unknown
// name is InvalidArgument listing the known ones.
absl::StatusOr<const StalenessPolicy*> FindStalenessPolicy(
    absl::string_view name);
// Every registered policy's name, in registration order.
std::vector<std::string> StalenessPolicyNames();

}  // namespace paragan

#endif  // PARAGAN_SERVER_STALENESS_POLICY_H_

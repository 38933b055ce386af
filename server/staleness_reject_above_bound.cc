// "reject_above_bound": a gradient more than the bound stale is refused
// (the worker pulls again); bound 0 in synchronous mode is the strict
// baseline.

#include "absl/strings/str_cat.h"
#include "server/staleness_policy.h"

namespace paragan {
namespace {

class RejectAboveBound final : public StalenessPolicy {
 public:
  absl::string_view name() const override { return "reject_above_bound"; }
  std::vector<absl::string_view> aliases() const override { return {"reject"}; }
  StalenessDecision Decide(int64_t staleness, int64_t bound) const override {
    StalenessDecision d;
    if (staleness > bound) {
      d.accept = false;
      d.reason = absl::StrCat("staleness ", staleness, " above bound ", bound);
    }
    return d;
  }
};

}  // namespace

const StalenessPolicy& RejectAboveBoundPolicy() {
  static const RejectAboveBound* const policy = new RejectAboveBound;
  return *policy;
}

}  // namespace paragan

// "scale_by_inverse_staleness": a gradient s versions stale steps with
// lr / (1 + s) (asynchronous) or counts 1 / (1 + s) into the round's sum
// (synchronous).

#include "server/staleness_policy.h"

namespace paragan {
namespace {

class ScaleByInverseStaleness final : public StalenessPolicy {
 public:
  absl::string_view name() const override {
    return "scale_by_inverse_staleness";
  }
  std::vector<absl::string_view> aliases() const override { return {"scale"}; }
  StalenessDecision Decide(int64_t staleness,
                           int64_t /*bound*/) const override {
    StalenessDecision d;
    d.lr_divisor = 1.0f + static_cast<float>(staleness);
    d.round_weight = 1.0f / d.lr_divisor;
    return d;
  }
};

}  // namespace

const StalenessPolicy& ScaleByInverseStalenessPolicy() {
  static const ScaleByInverseStaleness* const policy =
      new ScaleByInverseStaleness;
  return *policy;
}

}  // namespace paragan

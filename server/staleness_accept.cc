// "accept": a stale gradient is applied as is.

#include "server/staleness_policy.h"

namespace paragan {
namespace {

class Accept final : public StalenessPolicy {
 public:
  absl::string_view name() const override { return "accept"; }
  StalenessDecision Decide(int64_t /*staleness*/,
                           int64_t /*bound*/) const override {
    return {};
  }
};

}  // namespace

const StalenessPolicy& AcceptPolicy() {
  static const Accept* const policy = new Accept;
  return *policy;
}

}  // namespace paragan

#include "server/staleness_policy.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

// The registered policies, one line each: X(<Name>Policy), the function that
// server/staleness_<name>.cc defines.
#define PARAGAN_STALENESS_POLICIES(X) \
  X(AcceptPolicy)                     \
  X(RejectAboveBoundPolicy)           \
  X(ScaleByInverseStalenessPolicy)

namespace paragan {

#define PARAGAN_DECLARE_POLICY(factory) const StalenessPolicy& factory();
PARAGAN_STALENESS_POLICIES(PARAGAN_DECLARE_POLICY)
#undef PARAGAN_DECLARE_POLICY

namespace {

const std::vector<const StalenessPolicy*>& Registered() {
#define PARAGAN_LIST_POLICY(factory) &factory(),
  static const auto* const policies = new std::vector<const StalenessPolicy*>{
      PARAGAN_STALENESS_POLICIES(PARAGAN_LIST_POLICY)};
#undef PARAGAN_LIST_POLICY
  return *policies;
}

}  // namespace

absl::StatusOr<const StalenessPolicy*> FindStalenessPolicy(
    absl::string_view name) {
  for (const StalenessPolicy* p : Registered()) {
    if (p->name() == name) return p;
    for (absl::string_view alias : p->aliases()) {
      if (alias == name) return p;
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown staleness policy '", name, "' (",
                   absl::StrJoin(StalenessPolicyNames(), " | "), ")"));
}

std::vector<std::string> StalenessPolicyNames() {
  std::vector<std::string> out;
  for (const StalenessPolicy* p : Registered()) {
    out.emplace_back(p->name());
  }
  return out;
}

}  // namespace paragan

#include "server/staleness_policy.h"

#include <set>

#include "gtest/gtest.h"

namespace paragan {
namespace {

TEST(StalenessPolicyTest, FindsEveryPolicyByNameAndAlias) {
  EXPECT_EQ((*FindStalenessPolicy("accept"))->name(), "accept");
  EXPECT_EQ((*FindStalenessPolicy("reject_above_bound"))->name(),
            "reject_above_bound");
  EXPECT_EQ((*FindStalenessPolicy("reject"))->name(), "reject_above_bound");
  EXPECT_EQ((*FindStalenessPolicy("scale"))->name(),
            "scale_by_inverse_staleness");
  std::set<std::string> seen;
  for (const std::string& name : StalenessPolicyNames()) {
    EXPECT_TRUE(seen.insert(name).second) << name;
    absl::StatusOr<const StalenessPolicy*> p = FindStalenessPolicy(name);
    ASSERT_TRUE(p.ok()) << name;
    EXPECT_EQ((*p)->name(), name);
  }
  EXPECT_EQ(seen.size(), 3u);
}

TEST(StalenessPolicyTest, UnknownNameListsTheKnownOnes) {
  absl::StatusOr<const StalenessPolicy*> p = FindStalenessPolicy("maybe");
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(p.status().message().find("'maybe' (accept | reject_above_bound | "
                                      "scale_by_inverse_staleness)"),
            std::string::npos)
      << p.status();
}

TEST(StalenessPolicyTest, Decisions) {
  const StalenessPolicy& accept = **FindStalenessPolicy("accept");
  StalenessDecision d = accept.Decide(7, 0);
  EXPECT_TRUE(d.accept);
  EXPECT_EQ(d.lr_divisor, 1.0f);
  EXPECT_EQ(d.round_weight, 1.0f);

  const StalenessPolicy& reject = **FindStalenessPolicy("reject_above_bound");
  EXPECT_TRUE(reject.Decide(2, 2).accept);
  d = reject.Decide(3, 2);
  EXPECT_FALSE(d.accept);
  EXPECT_EQ(d.reason, "staleness 3 above bound 2");

  const StalenessPolicy& scale =
      **FindStalenessPolicy("scale_by_inverse_staleness");
  d = scale.Decide(3, 0);
  EXPECT_TRUE(d.accept);
  EXPECT_EQ(d.lr_divisor, 4.0f);
  EXPECT_EQ(d.round_weight, 0.25f);
  EXPECT_EQ(scale.Decide(0, 0).lr_divisor, 1.0f);
}

}  // namespace
}  // namespace paragan

#include "dataloader/byte_budget.h"

#include <algorithm>
#include <limits>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace paragan {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1000);

TEST(ByteBudget, AnIdleBudgetLetsOneBurstThroughAtOnce) {
  ByteBudget b = *ByteBudget::Create(1e6, absl::Milliseconds(100));
  EXPECT_EQ(b.Reserve(60'000, kT0), absl::ZeroDuration());
  EXPECT_EQ(b.Reserve(40'000, kT0), absl::ZeroDuration());
  // The burst (100 KB) is spent: the next 50 KB wait for their 50 ms.
  EXPECT_EQ(b.Reserve(50'000, kT0), absl::Milliseconds(50));
}

TEST(ByteBudget, AMessageLargerThanTheBurstWaitsForItsExcessOnly) {
  ByteBudget b = *ByteBudget::Create(1e6, absl::Milliseconds(100));
  EXPECT_EQ(b.Reserve(300'000, kT0), absl::Milliseconds(200));
}

TEST(ByteBudget, TheLongRunRateNeverExceedsTheBudget) {
  const double rate = 2.5e6;
  const absl::Duration burst = absl::Milliseconds(50);
  ByteBudget b = *ByteBudget::Create(rate, burst);
  // A sender that sends each message as soon as it is allowed, with a
  // jittery message size, for 10 simulated seconds.
  absl::Time now = kT0;
  int64_t sent = 0;
  for (int i = 0; now < kT0 + absl::Seconds(10); ++i) {
    const int64_t bytes = 20'000 + (i * 7919) % 45'000;
    now += b.Reserve(bytes, now);
    sent += bytes;
    // Bytes started by `now` stay within rate * elapsed + one burst (and
    // the nanosecond rounding of durations).
    const double allowed =
        rate * absl::ToDoubleSeconds(now - kT0) + rate * 0.05 + 100;
    ASSERT_LE(static_cast<double>(sent), allowed) << "message " << i;
  }
  const double achieved =
      static_cast<double>(sent) / absl::ToDoubleSeconds(now - kT0);
  EXPECT_GT(achieved, 0.97 * rate);  // and the budget is used, not wasted
  EXPECT_LT(achieved, 1.03 * rate);
}

TEST(ByteBudget, IdleTimeIsBankedUpToOneBurstOnly) {
  ByteBudget b = *ByteBudget::Create(1e6, absl::Milliseconds(100));
  EXPECT_EQ(b.Reserve(100'000, kT0), absl::ZeroDuration());
  // Ten idle seconds do not buy ten seconds of bytes: one burst.
  const absl::Time later = kT0 + absl::Seconds(10);
  EXPECT_EQ(b.Reserve(100'000, later), absl::ZeroDuration());
  EXPECT_EQ(b.Reserve(100'000, later), absl::Milliseconds(100));
}

TEST(ByteBudget, ThreadsSharingABudgetQueueBehindEachOther) {
  ByteBudget b = *ByteBudget::Create(1e6, absl::ZeroDuration());
  std::vector<absl::Duration> waits(8);
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] { waits[i] = b.Reserve(10'000, kT0); });
  }
  for (std::thread& t : threads) t.join();
  // Eight 10 ms reservations at one instant: one each of 10..80 ms.
  std::sort(waits.begin(), waits.end());
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(waits[i], absl::Milliseconds(10 * (i + 1))) << i;
  }
}

TEST(ByteBudget, BadSettingsAreRefusedSayingWhy) {
  for (double rate : {0.0, -5.0, std::numeric_limits<double>::infinity(),
                      std::numeric_limits<double>::quiet_NaN()}) {
    absl::StatusOr<ByteBudget> b =
        ByteBudget::Create(rate, absl::Milliseconds(10));
    ASSERT_FALSE(b.ok()) << rate;
    EXPECT_NE(b.status().message().find("rate > 0"), std::string::npos)
        << b.status();
  }
  absl::StatusOr<ByteBudget> b = ByteBudget::Create(1e6, absl::Seconds(-1));
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find("burst"), std::string::npos);
}

}  // namespace
}  // namespace paragan

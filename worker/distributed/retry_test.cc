#include "worker/distributed/retry.h"

#include <vector>

#include "gtest/gtest.h"

namespace paragan {
namespace {

TEST(RetryTest, BackoffDoublesFrom100msTo2s) {
  RetryPolicy p;
  std::vector<int64_t> ms;
  for (int a = 1; a <= 8; ++a) {
    ms.push_back(absl::ToInt64Milliseconds(BackoffFor(p, a)));
  }
  EXPECT_EQ(ms,
            (std::vector<int64_t>{100, 200, 400, 800, 1600, 2000, 2000, 2000}));
}

TEST(RetryTest, OnlyUnavailableAndDeadlineAreRetryable) {
  EXPECT_TRUE(IsRetryable(absl::UnavailableError("x")));
  EXPECT_TRUE(IsRetryable(absl::DeadlineExceededError("x")));
  EXPECT_FALSE(IsRetryable(absl::OkStatus()));
  EXPECT_FALSE(IsRetryable(absl::FailedPreconditionError("x")));
  EXPECT_FALSE(IsRetryable(absl::InvalidArgumentError("x")));
}

// A fake clock: sleeping advances it.
struct FakeClock {
  absl::Time t = absl::UnixEpoch();
  std::vector<absl::Duration> sleeps;
  RetryEnv Env() {
    RetryEnv env;
    env.now = [this] { return t; };
    env.sleep = [this](absl::Duration d) {
      t += d;
      sleeps.push_back(d);
    };
    return env;
  }
};

TEST(RetryTest, RetriesUntilSuccess) {
  FakeClock clock;
  int calls = 0;
  std::vector<int> retries;
  absl::Status st = CallWithRetry(
      RetryPolicy(), "pull D from shard 0 (h:1)",
      [&] {
        return ++calls < 4 ? absl::UnavailableError("down") : absl::OkStatus();
      },
      nullptr, [&](const absl::Status&, int a) { retries.push_back(a); },
      clock.Env());
  EXPECT_TRUE(st.ok()) << st;
  EXPECT_EQ(calls, 4);
  EXPECT_EQ(retries, (std::vector<int>{1, 2, 3}));
  // 100 + 200 + 400 ms of backoff.
  EXPECT_EQ(clock.t - absl::UnixEpoch(), absl::Milliseconds(700));
}

TEST(RetryTest, GivesUpAfterMaxTotalNamingWhat) {
  FakeClock clock;
  int calls = 0;
  absl::Status st = CallWithRetry(
      RetryPolicy(), "push G to shard 1 (localhost:5)",
      [&] {
        ++calls;
        return absl::UnavailableError("connection refused");
      },
      nullptr, nullptr, clock.Env());
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(st.message().find("push G to shard 1 (localhost:5)"),
            std::string::npos)
      << st;
  EXPECT_NE(st.message().find("giving up"), std::string::npos) << st;
  EXPECT_NE(st.message().find("connection refused"), std::string::npos) << st;
  // 0.1+0.2+0.4+0.8+1.6 = 3.1 s, then 2 s steps: 3.1 + 28*2 = 59.1 s; the
  // next 2 s wait would pass 60 s.
  EXPECT_EQ(calls, 34);
  EXPECT_LE(clock.t - absl::UnixEpoch(), absl::Seconds(60));
}

TEST(RetryTest, OtherErrorsReturnAtOnce) {
  FakeClock clock;
  int calls = 0;
  absl::Status st = CallWithRetry(
      RetryPolicy(), "x",
      [&] {
        ++calls;
        return absl::FailedPreconditionError("base_version ahead");
      },
      nullptr, nullptr, clock.Env());
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(clock.sleeps.empty());
}

TEST(RetryTest, StopsWhenAsked) {
  FakeClock clock;
  std::atomic<bool> stop{false};
  int calls = 0;
  absl::Status st = CallWithRetry(
      RetryPolicy(), "x",
      [&] {
        if (++calls == 2) stop = true;
        return absl::UnavailableError("down");
      },
      &stop, nullptr, clock.Env());
  EXPECT_EQ(st.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(calls, 2);
}

}  // namespace
}  // namespace paragan

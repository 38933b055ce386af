#include "deploy/local/worker_control.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace paragan {
namespace local {
namespace {

class WorkerControlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    out_ = absl::StrCat(
        ::testing::TempDir(), "/wc_",
        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(out_);
    std::filesystem::create_directories(out_);
  }
  // Polls `control` until a request comes (or 10 s).
  static std::optional<ScaleControl::Request> NextRequest(
      ScaleControl& control) {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (absl::Now() < deadline) {
      if (auto r = control.Poll()) return r;
      absl::SleepFor(absl::Milliseconds(10));
    }
    return std::nullopt;
  }
  std::string out_;
};

TEST_F(WorkerControlTest, RequestIsTakenOnceAndAnswered) {
  ScaleControl control(out_);
  ASSERT_TRUE(control.Open().ok());
  absl::StatusOr<std::string> answer;
  std::thread command(
      [&] { answer = RequestScale(out_, 4, absl::Seconds(10)); });
  std::optional<ScaleControl::Request> r = NextRequest(control);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->workers, 4);
  ASSERT_TRUE(control.Answer(*r, std::string("4 worker(s): w0 w1 w2 w3")).ok());
  command.join();
  EXPECT_FALSE(control.Poll().has_value());  // answered: not again
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(*answer, "4 worker(s): w0 w1 w2 w3");

  // A refusal reaches the command with the launcher's words.
  std::thread refused(
      [&] { answer = RequestScale(out_, 0, absl::Seconds(10)); });
  r = NextRequest(control);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->workers, 0);
  ASSERT_TRUE(
      control.Answer(*r, absl::InvalidArgumentError("at least 1 worker")).ok());
  refused.join();
  EXPECT_EQ(answer.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(answer.status().message(), "at least 1 worker");
}

TEST_F(WorkerControlTest, MalformedRequestIsAnsweredWithWhatWasWrong) {
  ScaleControl control(out_);
  ASSERT_TRUE(control.Open().ok());
  std::ofstream(ControlDir(out_) + "/scale_request") << "abc four\n";
  EXPECT_FALSE(control.Poll().has_value());
  std::ifstream reply(ControlDir(out_) + "/scale_reply");
  std::string first, second;
  std::getline(reply, first);
  std::getline(reply, second);
  EXPECT_EQ(first, "abc error");
  EXPECT_NE(second.find("'four' workers: not a number"), std::string::npos)
      << second;
}

TEST_F(WorkerControlTest, NoLauncherIsAClearError) {
  absl::StatusOr<std::string> a = RequestScale(out_, 2, absl::Seconds(1));
  EXPECT_EQ(a.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(a.status().message().find("no paragan_local is training in"),
            std::string::npos)
      << a.status();
  {
    ScaleControl control(out_);
    ASSERT_TRUE(control.Open().ok());
    EXPECT_TRUE(std::filesystem::exists(ControlDir(out_) + "/launcher.pid"));
  }
  // The launcher ended: its pid file went with it.
  EXPECT_FALSE(std::filesystem::exists(ControlDir(out_) + "/launcher.pid"));
  // A pid file of a process long gone (a launcher killed by SIGKILL).
  std::ofstream(ControlDir(out_) + "/launcher.pid") << "2147483646\n";
  a = RequestScale(out_, 2, absl::Seconds(1));
  EXPECT_EQ(a.status().code(), absl::StatusCode::kFailedPrecondition)
      << a.status();
}

TEST_F(WorkerControlTest, SilentLauncherTimesOut) {
  ScaleControl control(out_);
  ASSERT_TRUE(control.Open().ok());
  absl::StatusOr<std::string> a =
      RequestScale(out_, 3, absl::Milliseconds(200));
  EXPECT_EQ(a.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_NE(a.status().message().find("did not answer within"),
            std::string::npos)
      << a.status();
  // A new run in the same directory drops the old, unanswered request.
  ScaleControl next(out_);
  ASSERT_TRUE(next.Open().ok());
  EXPECT_FALSE(next.Poll().has_value());
}

}  // namespace
}  // namespace local
}  // namespace paragan

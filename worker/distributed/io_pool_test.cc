// The session's I/O pool: every task runs, on at most `threads` threads at
// once, tasks may submit further tasks (a call's next stage), and the
// destructor runs what is still queued.

#include "worker/distributed/io_pool.h"

#include <atomic>
#include <chrono>
#include <future>
#include <set>
#include <thread>

#include "gtest/gtest.h"

namespace paragan {
namespace {

TEST(IoPoolTest, RunsEveryTaskOnItsThreads) {
  std::mutex mu;
  std::set<std::thread::id> ids;
  std::atomic<int> ran{0};
  {
    IoPool pool(3);
    EXPECT_EQ(pool.threads(), 3);
    for (int i = 0; i < 100; ++i) {
      pool.Submit([&] {
        std::lock_guard<std::mutex> lock(mu);
        ids.insert(std::this_thread::get_id());
        ++ran;
      });
    }
  }
  EXPECT_EQ(ran.load(), 100);
  EXPECT_LE(ids.size(), 3u);
  EXPECT_EQ(ids.count(std::this_thread::get_id()), 0u);
}

TEST(IoPoolTest, AtLeastOneThread) { EXPECT_EQ(IoPool(0).threads(), 1); }

TEST(IoPoolTest, NoMoreThanItsThreadsAtOnce) {
  std::atomic<int> active{0}, most{0};
  {
    IoPool pool(2);
    for (int i = 0; i < 8; ++i) {
      pool.Submit([&] {
        const int now = ++active;
        int m = most.load();
        while (now > m && !most.compare_exchange_weak(m, now)) {
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
        --active;
      });
    }
  }
  EXPECT_LE(most.load(), 2);
  EXPECT_GE(most.load(), 1);
}

// A chain of stages, each submitted by the one before, on one thread: the
// pattern of a push-then-pull call.
TEST(IoPoolTest, TasksSubmitTheirNextStageEvenOnOneThread) {
  IoPool pool(1);
  std::promise<int> done;
  std::function<void(int)> stage = [&](int k) {
    if (k == 5) {
      done.set_value(k);
      return;
    }
    pool.Submit([&, k] { stage(k + 1); });
  };
  pool.Submit([&] { stage(0); });
  EXPECT_EQ(done.get_future().get(), 5);
}

TEST(IoPoolTest, DestructorRunsWhatIsQueuedAndWhatItSubmits) {
  std::atomic<int> ran{0};
  {
    IoPool pool(1);
    pool.Submit([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      ++ran;
      pool.Submit([&] { ++ran; });
    });
    pool.Submit([&] { ++ran; });
  }
  EXPECT_EQ(ran.load(), 3);
}

}  // namespace
}  // namespace paragan

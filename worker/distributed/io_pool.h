#ifndef PARAGAN_WORKER_DISTRIBUTED_IO_POOL_H_
#define PARAGAN_WORKER_DISTRIBUTED_IO_POOL_H_

// A fixed set of threads running blocking I/O tasks (shard RPCs) in the order
// they were submitted. The parameter-server session (ps_session.h) owns one:
// its tasks never wait for one another (a table call's next stage is
// submitted by the task that finishes the current one), so any number of
// threads is deadlock-free; 2 per shard lets both tables' calls reach every
// shard at once.

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace paragan {

class IoPool {
 public:
  explicit IoPool(int threads);
  // Runs the tasks still queued, then joins the threads.
  ~IoPool();
  IoPool(const IoPool&) = delete;
  IoPool& operator=(const IoPool&) = delete;

  void Submit(std::function<void()> task);
  int threads() const { return static_cast<int>(threads_.size()); }

 private:
  void Loop();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace paragan

#endif  // PARAGAN_WORKER_DISTRIBUTED_IO_POOL_H_

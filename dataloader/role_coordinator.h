#ifndef PARAGAN_DATALOADER_ROLE_COORDINATOR_H_
#define PARAGAN_DATALOADER_ROLE_COORDINATOR_H_

// Role balancing for the decoupled schedule: workers started with
// --role=auto report, every few seconds, how many steps of their role they
// ran and how long they were busy (waits for the other role excluded); the
// coordinator answers which role to run next. It lives in the data service,
// which every worker reaches and which holds the sample buffer, so it works
// wherever the job runs (no launcher involved).
//
// Model. With k G workers of mean capacity g (G steps per busy second) and
// n - k D workers of mean capacity d, and r D updates per G update (each G
// step publishes r batches, each D step uses one), the job makes
// T(k) = min(r k g, (n - k) d) D updates per second. The coordinator moves
// one worker at a time toward the k that maximizes T, when the move gains
// at least min_gain, the worker has held its role for min_dwell and no
// other move happened for cooldown. Capacities are per worker and per role
// (an EMA of its reports); a role nobody has measured yet is assumed to
// cost what the other one does. A lone worker runs both (the coupled loop);
// a worker silent for `lease` is forgotten, so the roles of a dead worker
// are refilled from the others. Every decision that moves a worker, and
// every first assignment, is logged with the measurements behind it.

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>

#include "absl/time/time.h"
#include "proto/paragan.pb.h"

namespace paragan {

struct RoleCoordinatorOptions {
  absl::Duration report_interval = absl::Seconds(5);
  absl::Duration lease = absl::Seconds(30);
  absl::Duration min_dwell = absl::Seconds(10);
  absl::Duration cooldown = absl::Seconds(5);
  double min_gain = 0.05;  // a move must raise predicted D updates/s by 5%
  double ema = 0.5;        // weight of a new capacity report
  // Receives every logged decision (null: none).
  std::function<void(const std::string&)> log;
};

class RoleCoordinator {
 public:
  explicit RoleCoordinator(RoleCoordinatorOptions options);

  // Thread-safe. `buffered`: generated batches waiting in the buffer now
  // (reported in the reasons). InvalidArgument-free: a bad report (empty
  // id) is the caller's to refuse.
  v1::RoleAssignment Report(const v1::RoleReport& report, absl::Time now,
                            int64_t buffered);

  struct Split {
    int g = 0, d = 0, both = 0;
  };
  Split split() const;

  // The number of G workers among n in [1, n - 1] that maximizes
  // min(r k g, (n - k) d); n >= 2.
  static int BestGWorkers(int n, double g, double d, int r);
  static double Throughput(int n, int k, double g, double d, int r);

 private:
  struct Worker {
    v1::WorkerRole role = v1::BOTH;
    absl::Time last_seen, role_since;
    double g_capacity = -1, d_capacity = -1;  // < 0: not measured
  };
  void Forget(absl::Time now);
  // Mean capacity in a role: of the workers in it now that measured it,
  // else of any worker that ever did, else the other role's, else 1.
  double MeanCapacity(v1::WorkerRole role) const;
  std::string Describe(int r, int64_t buffered) const;
  void Log(const std::string& line) const;

  const RoleCoordinatorOptions options_;
  mutable std::mutex mu_;
  std::map<std::string, Worker> workers_;
  absl::Time last_move_ = absl::InfinitePast();
};

}  // namespace paragan

#endif  // PARAGAN_DATALOADER_ROLE_COORDINATOR_H_

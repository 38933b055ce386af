// The role coordinator's decisions, on simulated reports: the best split,
// convergence under unequal step costs without flapping, a lone worker,
// joins, dead workers refilled, and the log of every move.

#include "dataloader/role_coordinator.h"

#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace paragan {
namespace {

TEST(RoleCoordinatorTest, BestSplitBalancesGSupplyAgainstDDemand) {
  // T(k) = min(r k g, (n - k) d).
  EXPECT_EQ(RoleCoordinator::BestGWorkers(4, 10, 30, 1), 3);  // G 3x dearer
  EXPECT_EQ(RoleCoordinator::BestGWorkers(4, 30, 10, 1), 1);  // D 3x dearer
  EXPECT_EQ(RoleCoordinator::BestGWorkers(4, 10, 10, 1), 2);
  EXPECT_EQ(RoleCoordinator::BestGWorkers(2, 1, 100, 1), 1);  // both roles kept
  // Two D updates per G update: G's supply counts twice; ties go to D.
  EXPECT_EQ(RoleCoordinator::BestGWorkers(4, 10, 10, 2), 1);
  EXPECT_EQ(RoleCoordinator::BestGWorkers(9, 10, 10, 2), 3);
  EXPECT_DOUBLE_EQ(RoleCoordinator::Throughput(4, 3, 10, 30, 1), 30);
}

// Workers that report every 5 s with a fixed capacity per role.
struct Sim {
  RoleCoordinator coordinator;
  std::vector<std::string> log;
  absl::Time now = absl::UnixEpoch() + absl::Hours(1);
  std::map<std::string, v1::RoleReport> last;
  std::map<std::string, v1::WorkerRole> role;
  int moves = 0;

  explicit Sim(RoleCoordinatorOptions o = {})
      : coordinator([&] {
          o.log = [this](const std::string& l) { log.push_back(l); };
          return o;
        }()) {}

  // One round: each of `workers` reports what it ran since the last round.
  void Round(const std::vector<std::string>& workers, double g_cap,
             double d_cap, int ratio = 1) {
    for (const std::string& w : workers) {
      v1::RoleReport r;
      r.set_worker_id(w);
      r.set_d_steps_per_g_step(ratio);
      auto it = role.find(w);
      if (it == role.end()) {
        r.set_role(v1::BOTH);
      } else {
        r.set_role(it->second);
        const double cap = it->second == v1::G_ONLY ? g_cap : d_cap;
        r.set_steps(static_cast<int64_t>(cap * 5));
        r.set_busy_seconds(5);
        r.set_wall_seconds(5);
      }
      const v1::RoleAssignment a = coordinator.Report(r, now, 3);
      // A move: from one role of the split to the other (not a join).
      if (it != role.end() && it->second != v1::BOTH &&
          it->second != a.role()) {
        ++moves;
      }
      role[w] = a.role();
      EXPECT_GT(a.report_after_seconds(), 0);
      EXPECT_FALSE(a.reason().empty());
    }
    now += absl::Seconds(5);
  }
  int Count(v1::WorkerRole r) const {
    int n = 0;
    for (const auto& [w, x] : role) n += x == r;
    return n;
  }
};

TEST(RoleCoordinatorTest, ConvergesToTheExpectedSplitAndStaysThere) {
  Sim sim;
  const std::vector<std::string> w = {"w0", "w1", "w2", "w3"};
  // G steps cost 3x D steps: 3 G workers feed 1 D worker.
  for (int i = 0; i < 24; ++i) sim.Round(w, 10, 30);  // 2 minutes
  EXPECT_EQ(sim.Count(v1::G_ONLY), 3);
  EXPECT_EQ(sim.Count(v1::D_ONLY), 1);
  const int moves = sim.moves;
  for (int i = 0; i < 24; ++i) sim.Round(w, 10, 30);
  EXPECT_EQ(sim.moves, moves) << "roles flapped once converged";
  // Costs turn around (e.g. D grew): the split follows.
  for (int i = 0; i < 36; ++i) sim.Round(w, 30, 10);
  EXPECT_EQ(sim.Count(v1::G_ONLY), 1);
  EXPECT_EQ(sim.Count(v1::D_ONLY), 3);
  // Every move was logged with its measurements.
  int logged_moves = 0;
  for (const std::string& l : sim.log) {
    if (absl::StrContains(l, " -> ") &&
        absl::StrContains(l, "predicted D updates/s")) {
      ++logged_moves;
    }
  }
  EXPECT_EQ(logged_moves, sim.moves);
  EXPECT_GE(sim.moves, 3);
}

TEST(RoleCoordinatorTest, ALoneWorkerRunsBothAndSplitsWhenAnotherJoins) {
  Sim sim;
  sim.Round({"a"}, 10, 10);
  EXPECT_EQ(sim.role["a"], v1::BOTH);
  sim.Round({"a", "b"}, 10, 10);
  EXPECT_EQ(sim.role["b"], v1::G_ONLY);  // no G yet
  EXPECT_EQ(sim.role["a"], v1::BOTH);    // alone when it reported
  sim.Round({"a", "b"}, 10, 10);
  EXPECT_EQ(sim.role["a"], v1::D_ONLY);
  EXPECT_EQ(sim.role["b"], v1::G_ONLY);
  const RoleCoordinator::Split s = sim.coordinator.split();
  EXPECT_EQ(s.g, 1);
  EXPECT_EQ(s.d, 1);
  EXPECT_EQ(s.both, 0);
}

TEST(RoleCoordinatorTest, ADeadWorkersRoleIsRefilled) {
  RoleCoordinatorOptions o;
  o.lease = absl::Seconds(15);
  Sim sim(o);
  for (int i = 0; i < 6; ++i) sim.Round({"w0", "w1", "w2"}, 10, 10);
  ASSERT_EQ(sim.Count(v1::G_ONLY), 1);
  std::string g;
  std::vector<std::string> rest;
  for (const auto& [w, r] : sim.role) {
    if (r == v1::G_ONLY) {
      g = w;
    } else {
      rest.push_back(w);
    }
  }
  // The G worker dies: after the lease one D worker becomes the G worker.
  sim.role.erase(g);
  for (int i = 0; i < 10; ++i) sim.Round(rest, 10, 10);
  EXPECT_EQ(sim.Count(v1::G_ONLY), 1);
  EXPECT_EQ(sim.Count(v1::D_ONLY), 1);
  bool forgot = false;
  for (const std::string& l : sim.log) {
    forgot |= absl::StrContains(l, "forgot " + g);
  }
  EXPECT_TRUE(forgot);
}

TEST(RoleCoordinatorTest, AWorkerKeepsItsRoleForTheMinimumDwell) {
  RoleCoordinatorOptions o;
  o.min_dwell = absl::Seconds(60);
  Sim sim(o);
  const std::vector<std::string> w = {"w0", "w1", "w2", "w3"};
  for (int i = 0; i < 6; ++i) sim.Round(w, 10, 30);  // 30 s < 60 s
  EXPECT_EQ(sim.moves, 0);
  for (int i = 0; i < 30; ++i) sim.Round(w, 10, 30);
  EXPECT_EQ(sim.Count(v1::G_ONLY), 3);
}

}  // namespace
}  // namespace paragan

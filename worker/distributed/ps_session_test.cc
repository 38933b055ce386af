// The parameter-server session against in-memory shards (fake_shard.h): its
// decisions (roles, registration checks, sync agreement, push outcomes,
// when to merge, stuck synchronous rounds), registration, whole-table calls
// on the I/O pool, retries, re-registration after a restart, staleness
// statistics.

#include "worker/distributed/ps_session.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <future>
#include <map>
#include <memory>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "server/table_names.h"
#include "worker/distributed/fake_shard.h"
#include "worker/distributed/table_sync.h"
#include "worker/engine/backend.h"
#include "worker/engine/params.h"

namespace paragan {
namespace {

using fake::FakeCluster;
using fake::FakeShard;

// Two small networks: G has a buffer, D two tensors only.
struct Nets {
  std::unique_ptr<Backend> backend = MakeCpuBackend(1);
  ParamStore g{backend.get()}, d{backend.get()};
  Nets() {
    g.AddParam("g.w2", {16, 4});
    g.AddParam("g.w", {8, 4});
    g.AddParam("g.b", {4});
    g.AddBuffer("g.bn.mean", {4});
    d.AddParam("d.w", {4, 4});
    d.AddParam("d.b", {1});
  }
  std::vector<TableLayout> Layouts(int n) {
    std::vector<TableLayout> out;
    out.push_back(TableLayout::Create(kGeneratorTable, g, n).value());
    out.push_back(TableLayout::Create(kDiscriminatorTable, d, n).value());
    return out;
  }
};

RetryPolicy Quick() {
  RetryPolicy p;
  p.initial_backoff = absl::Milliseconds(1);
  p.max_backoff = absl::Milliseconds(2);
  p.max_total = absl::Seconds(20);
  return p;
}

struct Rig {
  Nets nets;
  std::vector<TableLayout> layouts;
  std::unique_ptr<FakeCluster> cluster;
  PsSessionOptions options;

  explicit Rig(int n = 2) {
    layouts = nets.Layouts(n);
    cluster = std::make_unique<FakeCluster>(
        n, "tiny", std::vector<const TableLayout*>{&layouts[0], &layouts[1]});
    options.worker_id = "w0";
    options.model = "tiny";
    options.ps = cluster->addresses;
    options.retry = Quick();
    options.connect = cluster->connector();
  }
  FakeShard& shard(int s) { return *cluster->shards[s]; }
  std::unique_ptr<PsSession> Session() {
    return PsSession::Create(options, layouts).value();
  }
};

// Stages the gradients (all 0.5) and buffers (all 2) of `store`.
PushStaging Staged(ParamStore& store) {
  for (Param& p : store.params()) {
    std::vector<float> v(static_cast<size_t>(p.grad.numel()), 0.5f);
    store.backend()->Upload(v.data(), &p.grad);
  }
  for (auto& [name, t] : store.buffers()) {
    std::vector<float> v(static_cast<size_t>(t->numel()), 2.0f);
    store.backend()->Upload(v.data(), t);
  }
  PushStaging staging;
  staging.Stage(store);
  return staging;
}

// Pull and merge into nothing; returns the shards merged.
std::vector<int> PullAndTake(PsSession& ps, const std::string& table) {
  TableCallResult r = ps.Pull(table).get();
  EXPECT_TRUE(r.status.ok()) << r.status;
  std::vector<int> merged;
  EXPECT_TRUE(ps.TakePulled(table, [&](int s, const PulledTable&) {
                  merged.push_back(s);
                  return absl::OkStatus();
                }).ok());
  return merged;
}

// ---- Decisions ----

TEST(PsSessionDecisionTest, RolesPushTheirTablesAndPullBoth) {
  EXPECT_TRUE(RolePushes(v1::BOTH, kGeneratorTable));
  EXPECT_TRUE(RolePushes(v1::BOTH, kDiscriminatorTable));
  EXPECT_TRUE(RolePushes(v1::G_ONLY, kGeneratorTable));
  EXPECT_FALSE(RolePushes(v1::G_ONLY, kDiscriminatorTable));
  EXPECT_FALSE(RolePushes(v1::D_ONLY, kGeneratorTable));
  EXPECT_TRUE(RolePushes(v1::D_ONLY, kDiscriminatorTable));
  EXPECT_FALSE(RolePushes(static_cast<v1::WorkerRole>(7), kGeneratorTable));
}

TEST(PsSessionDecisionTest, PushOutcomes) {
  EXPECT_EQ(ClassifyPush(absl::OkStatus()), PushOutcome::kDone);
  EXPECT_EQ(ClassifyPush(absl::FailedPreconditionError("restarted")),
            PushOutcome::kResync);
  EXPECT_EQ(ClassifyPush(absl::UnavailableError("gave up")),
            PushOutcome::kFailed);
  EXPECT_EQ(ClassifyPush(absl::InvalidArgumentError("bad")),
            PushOutcome::kFailed);
  EXPECT_EQ(ClassifyPush(absl::CancelledError("stop")), PushOutcome::kFailed);
}

TEST(PsSessionDecisionTest, MergeOnNewVersionOrForced) {
  EXPECT_TRUE(MustMerge(5, 4, false));
  EXPECT_TRUE(MustMerge(3, 4, false));  // went back
  EXPECT_FALSE(MustMerge(4, 4, false));
  EXPECT_TRUE(MustMerge(4, 4, true));
  EXPECT_TRUE(MustMerge(0, -1, false));  // first pull
}

v1::StateResponse State(const std::string& table, int64_t version,
                        int64_t pending) {
  v1::StateResponse r;
  v1::TableState* t = r.add_tables();
  t->set_name("other");
  t->set_version(0);
  t = r.add_tables();
  t->set_name(table);
  t->set_version(version);
  t->set_pending_contributions(pending);
  return r;
}

TEST(PsSessionDecisionTest, StuckSynchronousRounds) {
  // Waiting for 10: the table at 9 with contributions pending will get there.
  EXPECT_FALSE(StuckSyncVersion(State("D", 9, 1), "D", 10).has_value());
  // At 9 with none pending: the round was lost.
  EXPECT_EQ(StuckSyncVersion(State("D", 9, 0), "D", 10), 9);
  // Below 9: restarted from an older checkpoint.
  EXPECT_EQ(StuckSyncVersion(State("D", 4, 2), "D", 10), 4);
  // Already there (the timeout raced the step), or no such table.
  EXPECT_FALSE(StuckSyncVersion(State("D", 10, 0), "D", 10).has_value());
  EXPECT_FALSE(StuckSyncVersion(State("G", 1, 0), "D", 10).has_value());
}

v1::RegisterResponse WithSync(std::vector<int> per_table) {
  v1::RegisterResponse r;
  for (int sync : per_table) {
    v1::TableInfo* t = r.add_tables();
    t->mutable_update_rule()->set_sync_workers(sync);
    if (sync >= 0) t->add_tensors()->set_name("x");  // -1: holds nothing
  }
  return r;
}

TEST(PsSessionDecisionTest, ShardsMustAgreeOnSynchronousMode) {
  EXPECT_EQ(AgreedSyncWorkers({}).value(), 0);
  EXPECT_EQ(AgreedSyncWorkers({WithSync({0, 0}), WithSync({0, 0})}).value(), 0);
  EXPECT_EQ(AgreedSyncWorkers({WithSync({2, 2}), WithSync({2, -1})}).value(),
            2);
  // A table a shard holds nothing of does not count.
  EXPECT_EQ(AgreedSyncWorkers({WithSync({-1, 3})}).value(), 3);
  absl::StatusOr<int> bad =
      AgreedSyncWorkers({WithSync({1, 1}), WithSync({0})});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(AgreedSyncWorkers({WithSync({1, 2})}).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(PsSessionDecisionTest, RegistrationMustMatchThisWorker) {
  Rig x(2);
  std::vector<const TableLayout*> layouts{&x.layouts[0], &x.layouts[1]};
  auto check = [&](int s, const v1::RegisterResponse& r) {
    return CheckRegistration(s, 2, "h:1", "tiny", layouts, r);
  };
  v1::RegisterResponse good = x.shard(1).Register().value();
  EXPECT_TRUE(check(1, good).ok());
  absl::Status st = check(0, good);  // --ps order differs from the shard's id
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(st.message().find("is shard 1 of 2, but --ps lists it as shard 0"),
            std::string::npos)
      << st;
  EXPECT_EQ(CheckRegistration(1, 3, "h:1", "tiny", layouts, good).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(CheckRegistration(1, 2, "h:1", "biggan32", layouts, good)
                .message()
                .find("serves model 'tiny'"),
            std::string::npos);
  v1::RegisterResponse missing = good;  // tables in name order: D, G
  missing.clear_tables();
  *missing.add_tables() = good.tables(1);
  EXPECT_NE(check(1, missing).message().find("has no table"),
            std::string::npos);
  v1::RegisterResponse wrong = good;
  for (v1::TableInfo& t : *wrong.mutable_tables()) {
    if (t.tensors_size() > 0) t.mutable_tensors(0)->add_shape(2);
  }
  EXPECT_EQ(check(1, wrong).code(), absl::StatusCode::kFailedPrecondition);
}

// ---- Registration ----

TEST(PsSessionTest, CreateNeedsShardsAndAnId) {
  Rig x;
  PsSessionOptions o = x.options;
  o.ps.clear();
  EXPECT_EQ(PsSession::Create(o, x.nets.Layouts(2)).status().code(),
            absl::StatusCode::kInvalidArgument);
  o = x.options;
  o.worker_id.clear();
  EXPECT_EQ(PsSession::Create(o, x.nets.Layouts(2)).status().code(),
            absl::StatusCode::kInvalidArgument);
  // Layouts placed over another shard count.
  EXPECT_EQ(PsSession::Create(x.options, x.nets.Layouts(3)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(PsSessionTest, RegisterReportsWhatTheShardsSay) {
  Rig x;
  x.shard(0).d_steps_per_g_step = 3;
  x.shard(1).d_steps_per_g_step = 5;  // shard 0's counts
  x.shard(0).data_plane_port = 9000;
  auto ps = x.Session();
  EXPECT_EQ(ps->io_threads(), 4);  // 2 per shard
  ShardAgreement a = ps->Register().value();
  EXPECT_EQ(a.d_steps_per_g_step, 3);
  EXPECT_EQ(a.sync_workers, 0);
  EXPECT_EQ(a.on_data_plane, 1);
  EXPECT_FALSE(ps->synchronous());
  EXPECT_EQ(x.shard(0).registers(), 1);
  EXPECT_EQ(x.shard(1).registers(), 1);
}

TEST(PsSessionTest, RegisterFindsDisagreement) {
  Rig x;
  x.shard(1).sync_workers = 2;
  EXPECT_EQ(x.Session()->Register().status().code(),
            absl::StatusCode::kFailedPrecondition);
  Rig y;
  y.shard(1).reported_model = "dcgan32";
  absl::Status st = y.Session()->Register().status();
  EXPECT_NE(st.message().find("fake:7001"), std::string::npos) << st;
}

TEST(PsSessionTest, RegisterRetriesAnUnavailableShard) {
  Rig x;
  x.shard(1).register_errors = {absl::UnavailableError("down"),
                                absl::DeadlineExceededError("slow")};
  auto ps = x.Session();
  EXPECT_TRUE(ps->Register().ok());
  EXPECT_EQ(x.shard(1).registers(), 3);
  // Not retried: anything else.
  Rig y;
  y.shard(0).register_errors = {absl::InvalidArgumentError("bad id")};
  EXPECT_EQ(y.Session()->Register().status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(y.shard(0).registers(), 1);
}

TEST(PsSessionTest, DeregisterAsksEveryShardOnceAndNamesAFailure) {
  Rig x;
  auto ps = x.Session();
  ASSERT_TRUE(ps->Register().ok());
  absl::StatusOr<int> left = ps->Deregister(absl::Seconds(1));
  ASSERT_TRUE(left.ok()) << left.status();
  EXPECT_EQ(*left, 2);
  EXPECT_EQ(x.shard(0).deregisters(), 1);
  EXPECT_EQ(x.shard(1).deregisters(), 1);
  // One try each (a leaving process does not retry); shard 0 still asked.
  Rig y;
  y.shard(1).deregister_errors = {absl::UnavailableError("down")};
  auto ps2 = y.Session();
  ASSERT_TRUE(ps2->Register().ok());
  left = ps2->Deregister(absl::Seconds(1));
  EXPECT_EQ(left.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(left.status().message().find("shard 1 (fake:7001)"),
            std::string::npos)
      << left.status();
  EXPECT_EQ(y.shard(0).deregisters(), 1);
  EXPECT_EQ(y.shard(1).deregisters(), 1);
}

TEST(PsSessionTest, RegisterGivesUpAfterMaxTotalNamingTheShard) {
  Rig x;
  absl::Time now = absl::UnixEpoch();
  x.options.retry = RetryPolicy();  // 100 ms doubling to 2 s, 60 s in all
  x.options.retry_env.now = [&] { return now; };
  x.options.retry_env.sleep = [&](absl::Duration d) { now += d; };
  for (int i = 0; i < 100; ++i) {
    x.shard(0).register_errors.push_back(absl::UnavailableError("down"));
  }
  absl::Status st = x.Session()->Register().status();
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(st.message().find("register with shard 0 (fake:7000): giving up"),
            std::string::npos)
      << st;
  EXPECT_LE(now - absl::UnixEpoch(), absl::Seconds(60));
}

TEST(PsSessionTest, StopEndsRetriesWithCancelled) {
  Rig x;
  std::atomic<bool> stop{true};
  for (int i = 0; i < 5; ++i) {
    x.shard(0).register_errors.push_back(absl::UnavailableError("down"));
  }
  auto ps = x.Session();
  ps->set_stop(&stop);
  EXPECT_EQ(ps->Register().status().code(), absl::StatusCode::kCancelled);
}

// ---- Calls ----

TEST(PsSessionTest, PullMergesEveryHolderThenOnlyNewVersions) {
  Rig x;
  auto ps = x.Session();
  ASSERT_TRUE(ps->Register().ok());
  EXPECT_EQ(ps->held_version(kGeneratorTable), -1);
  EXPECT_EQ(PullAndTake(*ps, kGeneratorTable), (std::vector<int>{0, 1}));
  EXPECT_EQ(ps->held_version(kGeneratorTable), 0);
  // Nobody changed the table: nothing to write (local buffers stay).
  EXPECT_TRUE(PullAndTake(*ps, kGeneratorTable).empty());
  x.shard(1).Advance(kGeneratorTable, 2);
  EXPECT_EQ(PullAndTake(*ps, kGeneratorTable), (std::vector<int>{1}));
  EXPECT_EQ(ps->held_version(kGeneratorTable), 0);  // the minimum
  x.shard(0).Advance(kGeneratorTable, 5);
  PullAndTake(*ps, kGeneratorTable);
  EXPECT_EQ(ps->held_version(kGeneratorTable), 2);
}

TEST(PsSessionTest, MergedSlicesAreTheShardsAndErrorsNameTheShard) {
  Rig x;
  auto ps = x.Session();
  ASSERT_TRUE(ps->Register().ok());
  ASSERT_TRUE(ps->Pull(kGeneratorTable).get().status.ok());
  std::set<std::string> seen;
  absl::Status st =
      ps->TakePulled(kGeneratorTable, [&](int s, const PulledTable& p) {
        for (const auto& [name, t] : p.tensors) {
          EXPECT_EQ(t.values, x.shard(s).values(kGeneratorTable, name));
          seen.insert(name);
        }
        return s == 1 ? absl::DataLossError("bad slice") : absl::OkStatus();
      });
  EXPECT_EQ(seen.size(), 4u);
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(st.message().find("table G from shard 1 (fake:7001): bad slice"),
            std::string::npos)
      << st;
}

TEST(PsSessionTest, PushThenPullSendsGradientsAndBuffersAtTheHeldVersion) {
  Rig x;
  auto ps = x.Session();
  ASSERT_TRUE(ps->Register().ok());
  PullAndTake(*ps, kGeneratorTable);
  x.shard(0).Advance(kGeneratorTable, 4);  // other workers
  PullAndTake(*ps, kGeneratorTable);
  PushStaging staging = Staged(x.nets.g);
  TableCallResult r = ps->PushThenPull(kGeneratorTable, staging).get();
  ASSERT_TRUE(r.status.ok()) << r.status;
  EXPECT_GE(r.push_seconds, 0);
  EXPECT_GE(r.pull_seconds, 0);
  std::set<uint64_t> ids;
  for (int s = 0; s < 2; ++s) {
    std::vector<fake::PushRecord> pushes = x.shard(s).pushes();
    ASSERT_EQ(pushes.size(), 1u);
    EXPECT_EQ(pushes[0].base_version, s == 0 ? 4 : 0);
    ids.insert(pushes[0].push_id);
    for (const auto& [name, kind] : pushes[0].kinds) {
      EXPECT_EQ(kind, name == "g.bn.mean" ? v1::VALUE : v1::GRADIENT) << name;
    }
    // Pulled after the push: each shard's new version is merged.
    EXPECT_EQ(x.shard(s).pulls().back().min_version, 0);  // asynchronous
  }
  EXPECT_EQ(ids.size(), 2u);
  std::vector<int> merged;
  ASSERT_TRUE(ps->TakePulled(kGeneratorTable, [&](int s, const PulledTable&) {
                  merged.push_back(s);
                  return absl::OkStatus();
                }).ok());
  EXPECT_EQ(merged, (std::vector<int>{0, 1}));
  EXPECT_EQ(ps->held_version(kGeneratorTable), 1);  // min(5, 1)
  // Shard 1 holds the buffer: replaced by the pushed value.
  EXPECT_EQ(x.shard(1).values(kGeneratorTable, "g.bn.mean"),
            std::vector<float>(4, 2.0f));
}

TEST(PsSessionTest, PushIdsIncrease) {
  Rig x;
  auto ps = x.Session();
  ASSERT_TRUE(ps->Register().ok());
  PushStaging staging = Staged(x.nets.d);
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(ps->Push(kDiscriminatorTable, staging).get().status.ok());
  }
  std::vector<uint64_t> ids;
  for (int s = 0; s < 2; ++s)
    for (const fake::PushRecord& p : x.shard(s).pushes())
      if (p.table == kDiscriminatorTable) ids.push_back(p.push_id);
  std::set<uint64_t> unique(ids.begin(), ids.end());
  EXPECT_EQ(unique.size(), ids.size());
  std::vector<uint64_t> on0;
  for (const fake::PushRecord& p : x.shard(0).pushes())
    on0.push_back(p.push_id);
  EXPECT_TRUE(std::is_sorted(on0.begin(), on0.end()));
}

TEST(PsSessionTest, APushRetriedKeepsItsId) {
  Rig x;
  x.shard(1).push_errors = {absl::UnavailableError("reset"),
                            absl::DeadlineExceededError("lost reply")};
  auto ps = x.Session();
  ASSERT_TRUE(ps->Register().ok());
  PullAndTake(*ps, kGeneratorTable);
  ASSERT_TRUE(
      ps->PushThenPull(kGeneratorTable, Staged(x.nets.g)).get().status.ok());
  std::vector<fake::PushRecord> p = x.shard(1).pushes();
  ASSERT_EQ(p.size(), 3u);
  EXPECT_EQ(p[0].push_id, p[1].push_id);
  EXPECT_EQ(p[1].push_id, p[2].push_id);
  EXPECT_EQ(x.shard(1).version(kGeneratorTable), 1);  // applied once
}

TEST(PsSessionTest, TheJournalHasEveryPushAndItsAnswer) {
  Rig x;
  x.shard(1).push_errors = {absl::UnavailableError("reset")};
  const std::string path =
      absl::StrCat(getenv("TEST_TMPDIR"), "/session_journal.txt");
  std::remove(path.c_str());
  auto journal = PushJournal::Open(path, "w0");
  ASSERT_TRUE(journal.ok()) << journal.status();
  x.options.journal = journal->get();
  auto ps = x.Session();
  ASSERT_TRUE(ps->Register().ok());
  PullAndTake(*ps, kGeneratorTable);
  ASSERT_TRUE(
      ps->PushThenPull(kGeneratorTable, Staged(x.nets.g)).get().status.ok());
  // Restarted from an older checkpoint: the next push to shard 0 is refused.
  x.shard(0).Advance(kGeneratorTable, 3);
  PullAndTake(*ps, kGeneratorTable);
  x.shard(0).Restart(1);
  ASSERT_TRUE(
      ps->PushThenPull(kGeneratorTable, Staged(x.nets.g)).get().status.ok());
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  ASSERT_EQ(lines.size(), 8u) << absl::StrJoin(lines, "\n");
  std::map<std::string, int> kinds;
  for (const std::string& l : lines) ++kinds[l.substr(0, 4)];
  EXPECT_EQ(kinds["send"], 4);
  EXPECT_EQ(kinds["done"], 3);
  EXPECT_EQ(kinds["fail"], 1);
  // Shard 1's first push: one send, one answer after the retry, one id.
  const fake::PushRecord first = x.shard(1).pushes().front();  // a copy
  const std::string id = absl::StrCat(" id=", first.push_id);
  int with_id = 0;
  for (const std::string& l : lines) {
    if (l.find(id) == std::string::npos) continue;
    ++with_id;
    EXPECT_NE(l.find("worker=w0 table=G shard=1"), std::string::npos) << l;
  }
  EXPECT_EQ(with_id, 2);
  bool refused_logged = false;
  for (const std::string& l : lines) {
    if (l.rfind("fail ", 0) == 0) {
      refused_logged = l.find("shard=0") != std::string::npos &&
                       l.find("code=FAILED_PRECONDITION") != std::string::npos;
    }
  }
  EXPECT_TRUE(refused_logged) << absl::StrJoin(lines, "\n");
  EXPECT_TRUE((*journal)->status().ok());
}

TEST(PsSessionTest, ARefusedPushIsDroppedThenTheShardIsRegisteredAndMerged) {
  Rig x;
  auto ps = x.Session();
  ASSERT_TRUE(ps->Register().ok());
  x.shard(0).Advance(kGeneratorTable, 3);
  PullAndTake(*ps, kGeneratorTable);
  // Restarted from an older checkpoint: the push's base is ahead.
  x.shard(0).Restart(1);
  TableCallResult r = ps->PushThenPull(kGeneratorTable, Staged(x.nets.g)).get();
  EXPECT_TRUE(r.status.ok()) << r.status;  // dropped, not failed
  EXPECT_EQ(x.shard(0).pushes().back().status.code(),
            absl::StatusCode::kFailedPrecondition);
  // Again before the pull, and once more when the pull finds the version
  // went back (as the worker always did).
  EXPECT_EQ(x.shard(0).registers(), 3);
  EXPECT_EQ(x.shard(1).registers(), 1);
  std::vector<int> merged;
  ASSERT_TRUE(ps->TakePulled(kGeneratorTable, [&](int s, const PulledTable&) {
                  merged.push_back(s);
                  return absl::OkStatus();
                }).ok());
  EXPECT_EQ(merged, (std::vector<int>{0, 1}));
  EXPECT_EQ(ps->held_version(kGeneratorTable), 1);
}

TEST(PsSessionTest, AForcedMergeHappensEvenAtTheSameVersion) {
  Rig x;
  auto ps = x.Session();
  ASSERT_TRUE(ps->Register().ok());
  PullAndTake(*ps, kDiscriminatorTable);
  // Shard 0 refuses (lost registration) but keeps its version.
  x.shard(0).push_errors = {absl::FailedPreconditionError("not registered")};
  ASSERT_TRUE(ps->PushThenPull(kDiscriminatorTable, Staged(x.nets.d))
                  .get()
                  .status.ok());
  std::vector<int> merged;
  ASSERT_TRUE(
      ps->TakePulled(kDiscriminatorTable, [&](int s, const PulledTable&) {
          merged.push_back(s);
          return absl::OkStatus();
        }).ok());
  EXPECT_EQ(x.shard(0).version(kDiscriminatorTable), 0);
  EXPECT_EQ(merged, (std::vector<int>{0, 1}));  // 0: forced; 1: new version
}

TEST(PsSessionTest, OtherPushErrorsFailTheCallAndSkipThePull) {
  Rig x;
  auto ps = x.Session();
  ASSERT_TRUE(ps->Register().ok());
  PullAndTake(*ps, kGeneratorTable);
  const size_t pulls = x.shard(0).pulls().size();
  x.shard(1).push_errors = {absl::InvalidArgumentError("NaN in g.w")};
  TableCallResult r = ps->PushThenPull(kGeneratorTable, Staged(x.nets.g)).get();
  EXPECT_EQ(r.status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(x.shard(0).pulls().size(), pulls);
  // The table can be called again.
  EXPECT_TRUE(ps->Pull(kGeneratorTable).get().status.ok());
}

TEST(PsSessionTest, AShardThatWentBackIsReportedRegisteredAndMerged) {
  Rig x;
  auto ps = x.Session();
  ASSERT_TRUE(ps->Register().ok());
  x.shard(1).Advance(kGeneratorTable, 7);
  PullAndTake(*ps, kGeneratorTable);
  x.shard(1).Restart(2);
  EXPECT_EQ(PullAndTake(*ps, kGeneratorTable), (std::vector<int>{1}));
  EXPECT_EQ(x.shard(1).registers(), 2);
  EXPECT_EQ(ps->held_version(kGeneratorTable), 0);
}

TEST(PsSessionTest, APullAfterUnavailableRegistersFirst) {
  Rig x;
  auto ps = x.Session();
  ASSERT_TRUE(ps->Register().ok());
  x.shard(0).pull_errors = {absl::UnavailableError("restarting")};
  EXPECT_EQ(PullAndTake(*ps, kDiscriminatorTable).size(), 2u);
  EXPECT_EQ(x.shard(0).registers(), 2);
  EXPECT_EQ(x.shard(0).pulls().size(), 2u);
}

TEST(PsSessionTest, SynchronousPullsWaitForTheNextVersion) {
  Rig x;
  for (int s = 0; s < 2; ++s) x.shard(s).sync_workers = 1;
  auto ps = x.Session();
  ASSERT_EQ(ps->Register().value().sync_workers, 1);
  EXPECT_TRUE(ps->synchronous());
  PullAndTake(*ps, kGeneratorTable);
  EXPECT_EQ(x.shard(0).pulls().back().min_version, 0);
  ASSERT_TRUE(
      ps->PushThenPull(kGeneratorTable, Staged(x.nets.g)).get().status.ok());
  EXPECT_EQ(x.shard(0).pulls().back().min_version, 1);
  EXPECT_EQ(x.shard(1).pulls().back().min_version, 1);
}

TEST(PsSessionTest, ASynchronousRoundThatCannotCompleteFallsBackToAPlainPull) {
  Rig x;
  for (int s = 0; s < 2; ++s) x.shard(s).sync_workers = 1;
  x.shard(0).drop_sync_rounds = true;  // the round is lost
  auto ps = x.Session();
  ASSERT_TRUE(ps->Register().ok());
  PullAndTake(*ps, kGeneratorTable);
  TableCallResult r = ps->PushThenPull(kGeneratorTable, Staged(x.nets.g)).get();
  ASSERT_TRUE(r.status.ok()) << r.status;
  std::vector<fake::PullRecord> pulls = x.shard(0).pulls();
  ASSERT_GE(pulls.size(), 3u);
  EXPECT_EQ(pulls[pulls.size() - 2].min_version, 1);
  EXPECT_EQ(pulls[pulls.size() - 2].status.code(),
            absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(pulls.back().min_version, 0);
  EXPECT_EQ(x.shard(0).registers(), 2);  // and registered again
}

TEST(PsSessionTest, ARoleThatMayNotPushATableFailsAtOnce) {
  Rig x;
  x.options.role = v1::D_ONLY;
  auto ps = x.Session();
  ASSERT_TRUE(ps->Register().ok());
  TableCallResult r = ps->PushThenPull(kGeneratorTable, Staged(x.nets.g)).get();
  EXPECT_EQ(r.status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status.message().find("role D_ONLY"), std::string::npos);
  EXPECT_TRUE(x.shard(0).pushes().empty());
  // It pulls G and pushes D.
  EXPECT_TRUE(ps->Pull(kGeneratorTable).get().status.ok());
  EXPECT_TRUE(
      ps->Push(kDiscriminatorTable, Staged(x.nets.d)).get().status.ok());
}

TEST(PsSessionTest, StalenessAndRefusalsAreCounted) {
  Rig x;
  auto ps = x.Session();
  ASSERT_TRUE(ps->Register().ok());
  PullAndTake(*ps, kDiscriminatorTable);
  x.shard(0).Advance(kDiscriminatorTable, 3);
  x.shard(1).Advance(kDiscriminatorTable, 1);
  x.shard(1).refuse_pushes = true;
  ASSERT_TRUE(
      ps->Push(kDiscriminatorTable, Staged(x.nets.d)).get().status.ok());
  PushStats st = ps->TakePushStats(kDiscriminatorTable);
  EXPECT_EQ(st.pushes, 2);
  EXPECT_DOUBLE_EQ(st.mean_staleness, 2.0);
  EXPECT_EQ(st.rejected_total, 1);
  st = ps->TakePushStats(kDiscriminatorTable);  // since the last take
  EXPECT_EQ(st.pushes, 0);
  EXPECT_EQ(st.mean_staleness, 0);
  EXPECT_EQ(st.rejected_total, 1);  // ever
  EXPECT_EQ(ps->TakePushStats(kGeneratorTable).pushes, 0);
}

TEST(PsSessionTest, ShardCallsRunInParallelOnThePool) {
  Rig x;
  auto c = std::make_shared<fake::Concurrency>();
  c->hold = absl::Milliseconds(100);
  for (int s = 0; s < 2; ++s) x.shard(s).concurrency = c;
  auto ps = x.Session();
  ASSERT_TRUE(ps->Register().ok());
  PullAndTake(*ps, kGeneratorTable);
  PullAndTake(*ps, kDiscriminatorTable);
  // Both tables at once: up to 4 shard calls (2 tables x 2 shards).
  PushStaging g = Staged(x.nets.g), d = Staged(x.nets.d);
  TableCall gc = ps->PushThenPull(kGeneratorTable, g);
  TableCall dc = ps->PushThenPull(kDiscriminatorTable, d);
  EXPECT_TRUE(gc.get().status.ok());
  EXPECT_TRUE(dc.get().status.ok());
  EXPECT_GE(c->max_active, 2);
  EXPECT_LE(c->max_active, 4);
}

TEST(PsSessionTest, OneIoThreadIsEnough) {
  Rig x;
  auto c = std::make_shared<fake::Concurrency>();
  for (int s = 0; s < 2; ++s) x.shard(s).concurrency = c;
  x.options.io_threads = 1;
  auto ps = x.Session();
  EXPECT_EQ(ps->io_threads(), 1);
  ASSERT_TRUE(ps->Register().ok());
  PushStaging g = Staged(x.nets.g), d = Staged(x.nets.d);
  TableCall gc = ps->PushThenPull(kGeneratorTable, g);
  TableCall dc = ps->PushThenPull(kDiscriminatorTable, d);
  EXPECT_TRUE(gc.get().status.ok());
  EXPECT_TRUE(dc.get().status.ok());
  EXPECT_EQ(c->max_active, 1);
}

TEST(PsSessionTest, CallbacksRunOnceWithTheResult) {
  Rig x;
  auto ps = x.Session();
  ASSERT_TRUE(ps->Register().ok());
  std::promise<absl::Status> done;
  std::atomic<int> calls{0};
  ps->Pull(kGeneratorTable, [&](TableCallResult r) {
    ++calls;
    done.set_value(r.status);
  });
  EXPECT_TRUE(done.get_future().get().ok());
  EXPECT_EQ(calls.load(), 1);
}

TEST(PsSessionTest, ShardsHoldingNothingOfATableAreLeftOut) {
  Rig x(3);  // D's two tensors land on shards 0 and 1
  ASSERT_FALSE(x.shard(2).holds(kDiscriminatorTable));
  auto ps = x.Session();
  ASSERT_TRUE(ps->Register().ok());
  EXPECT_EQ(PullAndTake(*ps, kDiscriminatorTable), (std::vector<int>{0, 1}));
  EXPECT_TRUE(x.shard(2).pulls().empty());
  ASSERT_TRUE(
      ps->Push(kDiscriminatorTable, Staged(x.nets.d)).get().status.ok());
  EXPECT_TRUE(x.shard(2).pushes().empty());
  EXPECT_EQ(ps->held_version(kDiscriminatorTable), 0);
}

}  // namespace
}  // namespace paragan

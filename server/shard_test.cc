#include "server/shard.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>

namespace paragan {
namespace {

std::string TempDir(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return std::string(dir ? dir : "/tmp") + "/" + name;
}

// A network of a few tensors of different sizes, parameters and buffers,
// with distinct values.
NetworkInit TestNetwork(const std::string& signature = "test c=1") {
  NetworkInit n;
  n.model = "test";
  n.signature = signature;
  float next = 0;
  auto tensor = [&](const std::string& name, Shape shape, bool trainable) {
    TableTensor t{{name, shape, trainable}, {}};
    for (int64_t i = 0; i < NumElements(shape); ++i) t.values.push_back(next++);
    return t;
  };
  n.g = {tensor("g.fc.w", {64, 32}, true),
         tensor("g.fc.b", {64}, true),
         tensor("g.conv.w", {8, 4, 3, 3}, true),
         tensor("g.bn.w", {8}, true),
         tensor("g.bn.running_mean", {8}, false),
         tensor("g.out.w", {1, 8, 3, 3}, true)};
  n.d = {tensor("d.conv.w", {16, 1, 4, 4}, true),
         tensor("d.fc.w", {1, 256}, true), tensor("d.sn.u", {16}, false),
         tensor("d.fc.b", {1}, true)};
  return n;
}

ShardOptions Options(int shard_id, int num_shards, const std::string& dir) {
  ShardOptions o;
  o.shard_id = shard_id;
  o.num_shards = num_shards;
  o.network = TestNetwork();
  o.checkpoint_dir = dir;
  o.d.adam.lr = 4e-4f;
  return o;
}

TEST(ShardTest, SlicesCoverTheNetworksExactlyOnceWithTheirInitialValues) {
  const NetworkInit net = TestNetwork();
  for (const std::vector<TableTensor>* all : {&net.g, &net.d}) {
    const bool is_g = all == &net.g;
    std::set<std::string> seen;
    std::vector<int64_t> loads;
    for (int s = 0; s < 3; ++s) {
      auto shard = ParameterShard::Create(Options(s, 3, ""));
      ASSERT_TRUE(shard.ok()) << shard.status();
      ParameterTable& t = is_g ? (*shard)->g() : (*shard)->d();
      loads.push_back(t.num_elements());
      auto snap = t.Snapshot();
      ASSERT_TRUE(snap.ok());
      for (const TableTensor& x : snap->tensors) {
        EXPECT_TRUE(seen.insert(x.spec.name).second) << x.spec.name;
        auto want = std::find_if(all->begin(), all->end(), [&](auto& w) {
          return w.spec.name == x.spec.name;
        });
        ASSERT_NE(want, all->end()) << x.spec.name;
        EXPECT_EQ(x.spec.shape, want->spec.shape);
        EXPECT_EQ(x.spec.trainable, want->spec.trainable);
        EXPECT_EQ(x.values, want->values) << x.spec.name;
      }
    }
    EXPECT_EQ(seen.size(), all->size());
    int64_t largest = 0;
    for (const auto& s : *all) {
      largest = std::max(largest, NumElements(s.spec.shape));
    }
    EXPECT_LE(*std::max_element(loads.begin(), loads.end()),
              *std::min_element(loads.begin(), loads.end()) + largest);
  }
}

TEST(ShardTest, CheckpointRestoreAndRefusals) {
  const std::string dir = TempDir("shard_ckpt");
  auto a = ParameterShard::Create(Options(1, 2, dir));
  ASSERT_TRUE(a.ok()) << a.status();
  auto restored = (*a)->RestoreNewestIntact();
  ASSERT_TRUE(restored.ok());
  EXPECT_TRUE(restored->path.empty());  // nothing written yet

  // Change D: one Adam step with a constant gradient.
  ParameterTable& d = (*a)->d();
  d.RegisterWorker("w");
  TensorMap grads;
  for (const TableTensorSpec& s : d.specs()) {
    if (s.trainable) grads[s.name].assign(NumElements(s.shape), 0.01f);
  }
  ASSERT_TRUE(d.ApplyGradients("w", 0, grads).ok());
  ASSERT_TRUE((*a)->Checkpoint().ok());
  EXPECT_EQ((*a)->checkpoint_path(), dir + "/shard-1-of-2.pgt");

  auto b = ParameterShard::Create(Options(1, 2, dir));
  ASSERT_TRUE(b.ok());
  restored = (*b)->RestoreNewestIntact();
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(restored->path, dir + "/shard-1-of-2.pgt");
  EXPECT_EQ((*b)->d().version(), 1);
  EXPECT_TRUE((*b)->d().IsRegistered("w"));
  for (ParameterTable* t : {&(*a)->g(), &(*a)->d()}) {
    const auto x = t->SaveState();
    const auto y = (t == &(*a)->g() ? (*b)->g() : (*b)->d()).SaveState();
    ASSERT_EQ(x.size(), y.size());
    for (size_t i = 0; i < x.size(); ++i) EXPECT_EQ(x[i].bytes, y[i].bytes);
  }

  // Another network (signature) with the same file name is refused.
  ShardOptions other = Options(1, 2, dir);
  other.network.signature = "test c=3";
  auto c = ParameterShard::Create(other);
  ASSERT_TRUE(c.ok());
  const int64_t v0 = (*c)->d().version();
  EXPECT_FALSE((*c)->RestoreNewestIntact().ok());
  EXPECT_EQ((*c)->d().version(), v0);

  // A corrupt file is an error, not a silent fresh start.
  {
    std::fstream f((*a)->checkpoint_path(),
                   std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    f.put('\x7f');
  }
  auto e = ParameterShard::Create(Options(1, 2, dir));
  ASSERT_TRUE(e.ok());
  EXPECT_FALSE((*e)->RestoreNewestIntact().ok());
  EXPECT_EQ((*e)->d().version(), 0);
}

TEST(ShardTest, GEmaIsCheckpointedWithTheShard) {
  const std::string dir = TempDir("shard_ema");
  ShardOptions o = Options(0, 2, dir);
  o.g.ema_decay = 0.999f;
  auto a = ParameterShard::Create(o);
  ASSERT_TRUE(a.ok()) << a.status();
  ParameterTable& g = (*a)->g();
  ASSERT_TRUE(g.has_ema());
  EXPECT_FALSE((*a)->d().has_ema());
  // Initially the EMA is G.
  auto ema0 = g.EmaSnapshot();
  auto g0 = g.Snapshot();
  ASSERT_TRUE(ema0.ok() && g0.ok());
  for (size_t i = 0; i < g0->tensors.size(); ++i) {
    EXPECT_EQ(ema0->tensors[i].values, g0->tensors[i].values);
  }
  g.RegisterWorker("w");
  TensorMap grads;
  for (const TableTensorSpec& s : g.specs()) {
    if (s.trainable) grads[s.name].assign(NumElements(s.shape), 0.01f);
  }
  for (int t = 0; t < 3; ++t) ASSERT_TRUE(g.ApplyGradients("w", t, grads).ok());
  ASSERT_TRUE((*a)->Checkpoint().ok());
  auto b = ParameterShard::Create(o);
  ASSERT_TRUE(b.ok());
  auto restored = (*b)->RestoreNewestIntact();
  ASSERT_TRUE(restored.ok()) << restored.status();
  ASSERT_FALSE(restored->path.empty());
  auto x = g.EmaSnapshot();
  auto y = (*b)->g().EmaSnapshot();
  ASSERT_TRUE(x.ok() && y.ok());
  EXPECT_EQ(y->version, 3);
  for (size_t i = 0; i < x->tensors.size(); ++i) {
    EXPECT_EQ(x->tensors[i].values, y->tensors[i].values);
  }
  // The same checkpoint restores into a shard run with --ema_decay=0.
  ShardOptions off = Options(0, 2, dir);
  auto c = ParameterShard::Create(off);
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE((*c)->RestoreNewestIntact().ok());
  EXPECT_EQ((*c)->g().version(), 3);
}

// One Adam step on D, then a checkpoint: D's version counts checkpoints.
void StepAndCheckpoint(ParameterShard& shard) {
  ParameterTable& d = shard.d();
  if (!d.IsRegistered("w")) d.RegisterWorker("w");
  TensorMap grads;
  for (const TableTensorSpec& s : d.specs()) {
    if (s.trainable) grads[s.name].assign(NumElements(s.shape), 0.01f);
  }
  ASSERT_TRUE(d.ApplyGradients("w", d.version(), grads).ok());
  ASSERT_TRUE(shard.Checkpoint().ok());
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

int64_t RestoredDVersion(const std::string& dir, ParameterShard::Restored* r,
                         absl::Status* status) {
  ShardOptions o = Options(0, 1, dir);
  auto shard = ParameterShard::Create(o);
  EXPECT_TRUE(shard.ok());
  absl::StatusOr<ParameterShard::Restored> restored =
      (*shard)->RestoreNewestIntact();
  *status = restored.status();
  if (restored.ok()) *r = *restored;
  return (*shard)->d().version();
}

TEST(ShardTest, KeepsTheLastCheckpointsAndRestoresTheNewestIntactOne) {
  const std::string dir = TempDir("shard_rotation");
  std::filesystem::remove_all(dir);
  ShardOptions o = Options(0, 1, dir);
  o.keep_checkpoints = 3;
  auto a = ParameterShard::Create(o);
  ASSERT_TRUE(a.ok());
  for (int i = 0; i < 4; ++i) StepAndCheckpoint(**a);
  const std::string newest = (*a)->checkpoint_path();
  EXPECT_TRUE(std::filesystem::exists(newest));
  EXPECT_TRUE(std::filesystem::exists(newest + ".1"));
  EXPECT_TRUE(std::filesystem::exists(newest + ".2"));
  EXPECT_FALSE(std::filesystem::exists(newest + ".3"));
  EXPECT_FALSE(std::filesystem::exists(newest + ".new"));

  ParameterShard::Restored r;
  absl::Status st;
  EXPECT_EQ(RestoredDVersion(dir, &r, &st), 4);
  EXPECT_EQ(r.path, newest);
  EXPECT_TRUE(r.skipped.empty());

  // A flipped byte in the newest: its checksum fails, the one before wins.
  {
    std::fstream f(newest, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(300);
    f.put('\x55');
  }
  EXPECT_EQ(RestoredDVersion(dir, &r, &st), 3) << st;
  EXPECT_EQ(r.path, newest + ".1");
  ASSERT_EQ(r.skipped.size(), 1u);
  EXPECT_NE(r.skipped[0].find("checksum"), std::string::npos) << r.skipped[0];

  // The next one torn (a crash mid-write on a filesystem without atomic
  // rename): the oldest kept file wins.
  std::filesystem::resize_file(newest + ".1",
                               std::filesystem::file_size(newest + ".1") / 2);
  EXPECT_EQ(RestoredDVersion(dir, &r, &st), 2) << st;
  EXPECT_EQ(r.path, newest + ".2");
  EXPECT_EQ(r.skipped.size(), 2u);

  // All corrupt: an error naming each, and nothing restored.
  std::filesystem::resize_file(newest + ".2", 10);
  EXPECT_EQ(RestoredDVersion(dir, &r, &st), 0);
  EXPECT_TRUE(absl::IsDataLoss(st)) << st;
  EXPECT_NE(st.message().find(".pgt.2"), std::string::npos) << st;

  // A complete ".new" left by a crash before the rotation is the newest.
  ASSERT_TRUE((*a)->Checkpoint().ok());  // D version 4 at `newest`
  std::filesystem::rename(newest, newest + ".new");
  EXPECT_EQ(RestoredDVersion(dir, &r, &st), 4) << st;
  EXPECT_EQ(r.path, newest + ".new");
}

TEST(ShardTest, AFailedCheckpointLeavesThePreviousFilesAsTheyWere) {
  const std::string dir = TempDir("shard_full_disk");
  std::filesystem::remove_all(dir);
  auto a = ParameterShard::Create(Options(0, 1, dir));
  ASSERT_TRUE(a.ok());
  StepAndCheckpoint(**a);
  const std::string newest = (*a)->checkpoint_path();
  const std::string before = ReadAll(newest);
  ASSERT_GT(before.size(), 4096u);

  // Writes past 4 KB fail as on a full disk (EFBIG instead of ENOSPC).
  ParameterTable& d = (*a)->d();
  TensorMap grads;
  for (const TableTensorSpec& s : d.specs()) {
    if (s.trainable) grads[s.name].assign(NumElements(s.shape), 0.02f);
  }
  ASSERT_TRUE(d.ApplyGradients("w", 1, grads).ok());
  rlimit old_limit;
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old_limit), 0);
  signal(SIGXFSZ, SIG_IGN);
  rlimit small = old_limit;
  small.rlim_cur = 4096;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  absl::Status st = (*a)->Checkpoint();
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &old_limit), 0);
  signal(SIGXFSZ, SIG_DFL);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find(newest), std::string::npos) << st;

  EXPECT_EQ(ReadAll(newest), before);
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    EXPECT_EQ(e.path().string(), newest) << "left behind";
  }
  ParameterShard::Restored r;
  EXPECT_EQ(RestoredDVersion(dir, &r, &st), 1) << st;

  // Room again: the retry succeeds and the failed one's state is not lost.
  ASSERT_TRUE((*a)->Checkpoint().ok());
  EXPECT_EQ(RestoredDVersion(dir, &r, &st), 2) << st;
  EXPECT_EQ(ReadAll(newest + ".1"), before);
}

}  // namespace
}  // namespace paragan

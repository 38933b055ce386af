#include "server/shard.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
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
  auto restored = (*a)->RestoreIfPresent();
  ASSERT_TRUE(restored.ok());
  EXPECT_FALSE(*restored);  // nothing written yet

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
  restored = (*b)->RestoreIfPresent();
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_TRUE(*restored);
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
  EXPECT_FALSE((*c)->RestoreIfPresent().ok());
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
  EXPECT_FALSE((*e)->RestoreIfPresent().ok());
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
  auto restored = (*b)->RestoreIfPresent();
  ASSERT_TRUE(restored.ok()) << restored.status();
  ASSERT_TRUE(*restored);
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
  EXPECT_TRUE((*c)->RestoreIfPresent().ok());
  EXPECT_EQ((*c)->g().version(), 3);
}

}  // namespace
}  // namespace paragan

#include "server/table.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <random>
#include <thread>

#include "common/optim_kernels.h"

namespace paragan {
namespace {

std::vector<float> RandomVector(int64_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> out(static_cast<size_t>(n));
  for (float& x : out) x = dist(gen);
  return out;
}

// "w" [3, 4], "big" [40000] (the Adam kernel's parallel path), "b" [5], and
// a buffer "bn.running_mean" [5].
std::vector<TableTensor> TestTensors(uint32_t seed) {
  return {
      {{"w", {3, 4}, true}, RandomVector(12, seed)},
      {{"big", {40000}, true}, RandomVector(40000, seed + 1)},
      {{"b", {5}, true}, RandomVector(5, seed + 2)},
      {{"bn.running_mean", {5}, false}, RandomVector(5, seed + 3)},
  };
}

TensorMap TestGradients(uint32_t seed) {
  return {{"w", RandomVector(12, seed, 0.1f)},
          {"big", RandomVector(40000, seed + 1, 0.1f)},
          {"b", RandomVector(5, seed + 2, 0.1f)}};
}

class TableTest : public ::testing::Test {
 protected:
  std::unique_ptr<ParameterTable> MakeTable(const UpdateRule& rule,
                                            uint32_t seed = 1,
                                            float beta1 = 0.0f) {
    TableConfig config;
    config.name = "D";
    config.adam = {4e-4f, beta1, 0.999f, 1e-6f};
    config.rule = rule;
    auto t = ParameterTable::Create(config, TestTensors(seed));
    EXPECT_TRUE(t.ok()) << t.status();
    (*t)->RegisterWorker("w0");
    (*t)->RegisterWorker("w1");
    return std::move(t).value();
  }

  static std::map<std::string, std::vector<float>> Values(
      const ParameterTable& t) {
    std::map<std::string, std::vector<float>> out;
    auto snap = t.Snapshot();
    EXPECT_TRUE(snap.ok());
    for (const TableTensor& x : snap->tensors) out[x.spec.name] = x.values;
    return out;
  }

  // Reference: the Adam kernel on copies of the table's values.
  struct Reference {
    std::map<std::string, Tensor> value, m, v;
    int64_t step = 0;
  };
  Reference MakeReference(uint32_t seed) {
    Reference r;
    for (const TableTensor& t : TestTensors(seed)) {
      r.value[t.spec.name] = Tensor::HostFrom(t.spec.shape, t.values);
      r.m[t.spec.name] = Tensor::Host(t.spec.shape);
      r.v[t.spec.name] = Tensor::Host(t.spec.shape);
    }
    return r;
  }
  void ReferenceStep(Reference* r, float lr, const TensorMap& grads,
                     float beta1 = 0.0f) {
    ++r->step;
    for (const auto& [name, g] : grads) {
      AdamUpdateHost(lr, beta1, 0.999f, 1e-6f, r->step, g.data(),
                     r->value[name].data(), r->m[name].data(),
                     r->v[name].data(), r->value[name].numel());
    }
  }
  static void ExpectEqualsReference(const ParameterTable& t,
                                    const Reference& r) {
    for (const auto& [name, values] : Values(t)) {
      EXPECT_EQ(values, r.value.at(name).ToVector()) << name;
    }
  }
};

TEST_F(TableTest, RejectAboveBoundChangesNothing) {
  auto table = MakeTable({"reject_above_bound", 1, 0});
  ASSERT_TRUE(table->ApplyGradients("w0", 0, TestGradients(1)).ok());
  auto r = table->ApplyGradients("w1", 0, TestGradients(2));  // s = 1
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->applied);
  EXPECT_EQ(r->staleness, 1);
  const auto before = Values(*table);
  r = table->ApplyGradients("w1", 0, TestGradients(3));  // s = 2 > 1
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->accepted);
  EXPECT_FALSE(r->applied);
  EXPECT_EQ(r->staleness, 2);
  EXPECT_EQ(r->new_version, 2);
  EXPECT_NE(r->reason.find("above bound"), std::string::npos) << r->reason;
  EXPECT_EQ(Values(*table), before);
  const TableStats s = table->Stats();
  EXPECT_EQ(s.version, 2);
  EXPECT_EQ(s.num_updates, 2);
  EXPECT_EQ(s.adam_step, 2);
  EXPECT_EQ(s.rejected_pushes, 1);
  EXPECT_EQ(s.accepted_pushes, 2);
}

TEST_F(TableTest, ScaleByInverseStalenessIsAdamWithScaledLr) {
  auto table = MakeTable({"scale_by_inverse_staleness", 0, 0});
  Reference ref = MakeReference(1);
  const float lr = 4e-4f;
  // s = 0, 1, then 2 (two pushes from version 1 after it moved to 3).
  const std::vector<std::pair<int64_t, int64_t>> pushes = {
      {0, 0}, {0, 1}, {1, 1}, {1, 2}};
  for (size_t i = 0; i < pushes.size(); ++i) {
    const TensorMap g = TestGradients(10 + i);
    auto r = table->ApplyGradients("w0", pushes[i].first, g);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(r->applied);
    EXPECT_EQ(r->staleness, pushes[i].second);
    ReferenceStep(&ref, lr / (1.0f + static_cast<float>(pushes[i].second)), g);
  }
  ExpectEqualsReference(*table, ref);
}

TEST_F(TableTest, AcceptAppliesStaleGradientsAsIs) {
  auto table = MakeTable({"accept", 0, 0});
  Reference ref = MakeReference(1);
  for (int i = 0; i < 3; ++i) {
    const TensorMap g = TestGradients(20 + i);
    auto r = table->ApplyGradients("w0", 0, g);  // s = 0, 1, 2
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->staleness, i);
    EXPECT_TRUE(r->applied);
    ReferenceStep(&ref, 4e-4f, g);
  }
  ExpectEqualsReference(*table, ref);
}

TEST(EffectiveBeta1Test, LowersBeta1ByTheMomentumOfStaleness) {
  UpdateRule off;
  EXPECT_EQ(EffectiveBeta1(off, 0.5f, 1), 0.5f);
  UpdateRule on;
  on.momentum_compensation = true;
  EXPECT_EQ(EffectiveBeta1(on, 0.5f, 0), 0.5f);
  EXPECT_EQ(EffectiveBeta1(on, 0.5f, 1), 0.0f);
  EXPECT_FLOAT_EQ(EffectiveBeta1(on, 0.9f, 1), 0.4f);
  EXPECT_FLOAT_EQ(EffectiveBeta1(on, 0.9f, 3), 0.15f);
  EXPECT_EQ(EffectiveBeta1(on, 0.5f, 7), 0.0f);  // never negative
  EXPECT_EQ(EffectiveBeta1(on, 0.0f, 2), 0.0f);  // BigGAN's beta1
  UpdateRule sync = on;
  sync.sync_workers = 2;  // rounds are never stale
  EXPECT_EQ(EffectiveBeta1(sync, 0.5f, 1), 0.5f);
}

TEST_F(TableTest, MomentumCompensationStepsStaleGradientsWithLowerBeta1) {
  UpdateRule rule;
  rule.staleness_policy = "scale_by_inverse_staleness";
  rule.momentum_compensation = true;
  auto table = MakeTable(rule, /*seed=*/1, /*beta1=*/0.9f);
  Reference ref = MakeReference(1);
  // (base version, staleness): fresh, then 1, 1 and 3 versions behind.
  const std::vector<std::pair<int64_t, int64_t>> pushes = {
      {0, 0}, {0, 1}, {1, 1}, {0, 3}};
  for (size_t i = 0; i < pushes.size(); ++i) {
    const auto [base, staleness] = pushes[i];
    const TensorMap grads = TestGradients(300 + static_cast<uint32_t>(i));
    auto r = table->ApplyGradients(i % 2 ? "w1" : "w0", base, grads);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_TRUE(r->applied);
    ASSERT_EQ(r->staleness, staleness);
    const float s = static_cast<float>(staleness);
    ReferenceStep(&ref, 4e-4f / (1 + s), grads,
                  std::max(0.0f, 0.9f - s / (1 + s)));
  }
  ExpectEqualsReference(*table, ref);
}

TEST_F(TableTest, SyncModeAveragesWorkersAndStepsOnce) {
  auto table = MakeTable({"reject_above_bound", 0, 2});
  const auto initial = Values(*table);
  const TensorMap g0 = TestGradients(30), g1 = TestGradients(40);
  const TensorMap b0 = {{"bn.running_mean", {1, 2, 3, 4, 5}}};
  const TensorMap b1 = {{"bn.running_mean", {3, 4, 5, 6, 7}}};

  bool reached = false;
  std::thread waiter(
      [&] { reached = table->WaitForVersion(1, absl::Seconds(30)); });
  auto r = table->ApplyGradients("w0", 0, g0, b0);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->accepted);
  EXPECT_FALSE(r->applied);
  EXPECT_EQ(r->new_version, 0);
  EXPECT_EQ(Values(*table), initial);  // nothing until the round completes
  EXPECT_EQ(table->Stats().pending_contributions, 1);

  r = table->ApplyGradients("w0", 0, g1);  // duplicate in the round
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->accepted);
  EXPECT_NE(r->reason.find("duplicate"), std::string::npos);

  r = table->ApplyGradients("w1", 0, g1, b1);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->accepted);
  EXPECT_TRUE(r->applied);
  EXPECT_EQ(r->new_version, 1);
  waiter.join();
  EXPECT_TRUE(reached);

  TensorMap avg;
  for (const auto& [name, a] : g0) {
    const std::vector<float>& b = g1.at(name);
    std::vector<float>& out = avg[name];
    for (size_t i = 0; i < a.size(); ++i) out.push_back((a[i] + b[i]) / 2.0f);
  }
  Reference ref = MakeReference(1);
  ReferenceStep(&ref, 4e-4f, avg);
  ref.value["bn.running_mean"] = Tensor::HostFrom({5}, {2, 3, 4, 5, 6});
  ExpectEqualsReference(*table, ref);
  const TableStats s = table->Stats();
  EXPECT_EQ(s.num_updates, 1);
  EXPECT_EQ(s.pending_contributions, 0);

  // A late push for version 0 is refused by bound 0.
  const auto after = Values(*table);
  r = table->ApplyGradients("w0", 0, g0);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->accepted);
  EXPECT_EQ(r->staleness, 1);
  EXPECT_EQ(Values(*table), after);
  EXPECT_FALSE(table->WaitForVersion(2, absl::Milliseconds(10)));
}

TEST_F(TableTest, InvalidPushesRejectedWithNoStateChange) {
  for (int sync : {0, 2}) {
    auto table = MakeTable({"accept", 0, sync});
    // One valid push first, so there is Adam state (and in sync mode a
    // pending contribution) to protect.
    ASSERT_TRUE(table->ApplyGradients("w0", 0, TestGradients(1)).ok());
    const std::vector<NamedArray> state = table->SaveState();
    const TableStats stats = table->Stats();

    struct Case {
      std::string what, worker;
      int64_t base;
      TensorMap grads, buffers;
      absl::StatusCode code;
      std::string mention;
    };
    std::vector<Case> cases;
    auto add = [&](std::string what, std::function<void(TensorMap*)> edit,
                   absl::StatusCode code, std::string mention) {
      TensorMap g = TestGradients(2);
      edit(&g);
      cases.push_back({what, "w1", 0, g, {}, code, mention});
    };
    const auto kInvalid = absl::StatusCode::kInvalidArgument;
    add(
        "unknown tensor", [](TensorMap* g) { (*g)["nope"] = {1}; }, kInvalid,
        "nope");
    add(
        "wrong size", [](TensorMap* g) { (*g)["w"].pop_back(); }, kInvalid,
        "'w'");
    add(
        "NaN",
        [](TensorMap* g) {
          (*g)["big"][123] = std::numeric_limits<float>::quiet_NaN();
        },
        kInvalid, "'big'");
    add(
        "Inf",
        [](TensorMap* g) {
          (*g)["b"][0] = -std::numeric_limits<float>::infinity();
        },
        kInvalid, "'b'");
    add(
        "missing", [](TensorMap* g) { g->erase("b"); }, kInvalid, "'b'");
    add(
        "gradient for buffer",
        [](TensorMap* g) { (*g)["bn.running_mean"] = std::vector<float>(5); },
        kInvalid, "bn.running_mean");
    cases.push_back({"value for trainable",
                     "w1",
                     0,
                     TestGradients(2),
                     {{"w", std::vector<float>(12)}},
                     kInvalid,
                     "'w'"});
    cases.push_back({"NaN buffer",
                     "w1",
                     0,
                     TestGradients(2),
                     {{"bn.running_mean",
                       {0, 0, std::numeric_limits<float>::quiet_NaN(), 0, 0}}},
                     kInvalid,
                     "bn.running_mean"});
    cases.push_back({"future version",
                     "w1",
                     7,
                     TestGradients(2),
                     {},
                     absl::StatusCode::kFailedPrecondition,
                     "ahead"});
    cases.push_back({"negative version",
                     "w1",
                     -1,
                     TestGradients(2),
                     {},
                     kInvalid,
                     "negative"});
    cases.push_back({"unregistered",
                     "stranger",
                     0,
                     TestGradients(2),
                     {},
                     absl::StatusCode::kFailedPrecondition,
                     "stranger"});
    for (const Case& c : cases) {
      auto r = table->ApplyGradients(c.worker, c.base, c.grads, c.buffers);
      ASSERT_FALSE(r.ok()) << c.what << " (sync=" << sync << ")";
      EXPECT_EQ(r.status().code(), c.code) << c.what << ": " << r.status();
      EXPECT_NE(r.status().message().find(c.mention), std::string::npos)
          << c.what << ": " << r.status();
      const std::vector<NamedArray> now = table->SaveState();
      ASSERT_EQ(now.size(), state.size());
      for (size_t i = 0; i < now.size(); ++i) {
        EXPECT_EQ(now[i].bytes, state[i].bytes) << c.what << " " << now[i].name;
      }
      const TableStats s = table->Stats();
      EXPECT_EQ(s.version, stats.version) << c.what;
      EXPECT_EQ(s.accepted_pushes, stats.accepted_pushes) << c.what;
      EXPECT_EQ(s.rejected_pushes, stats.rejected_pushes) << c.what;
      EXPECT_EQ(s.pending_contributions, stats.pending_contributions) << c.what;
    }
  }
}

TEST_F(TableTest, SnapshotSubsetAndUnknownName) {
  auto table = MakeTable({});
  auto snap = table->Snapshot({"b", "w"});
  ASSERT_TRUE(snap.ok());
  ASSERT_EQ(snap->tensors.size(), 2u);
  EXPECT_EQ(snap->tensors[0].spec.name, "b");
  EXPECT_EQ(snap->tensors[1].spec.shape, (Shape{3, 4}));
  EXPECT_EQ(snap->tensors[0].values, TestTensors(1)[2].values);
  EXPECT_EQ(table->Snapshot({"zzz"}).status().code(),
            absl::StatusCode::kNotFound);
}

std::string TempPath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return std::string(dir ? dir : "/tmp") + "/" + name;
}

TEST_F(TableTest, CheckpointRoundTripIsBitIdentical) {
  auto table = MakeTable({"accept", 0, 0});
  table->RegisterWorker("late-joiner");
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(table
                    ->ApplyGradients("w0", i, TestGradients(50 + i),
                                     {{"bn.running_mean",
                                       {static_cast<float>(i), 1, 2, 3, 4}}})
                    .ok());
  }
  const std::string path = TempPath("table_roundtrip.pgt");
  ASSERT_TRUE(table->Checkpoint(path).ok());

  auto other = MakeTable({"accept", 0, 0}, /*seed=*/77);
  absl::Status st = other->Restore(path);
  ASSERT_TRUE(st.ok()) << st;
  const auto a = table->SaveState(), b = other->SaveState();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].name, b[i].name);
    EXPECT_EQ(a[i].bytes, b[i].bytes) << a[i].name;
  }
  EXPECT_EQ(other->version(), 3);
  EXPECT_TRUE(other->IsRegistered("late-joiner"));
  // Adam state came back too: the next step is identical.
  const TensorMap g = TestGradients(99);
  ASSERT_TRUE(table->ApplyGradients("w0", 3, g).ok());
  ASSERT_TRUE(other->ApplyGradients("w0", 3, g).ok());
  EXPECT_EQ(Values(*table), Values(*other));
}

TEST_F(TableTest, CorruptOrMismatchedCheckpointRejected) {
  auto table = MakeTable({});
  ASSERT_TRUE(table->ApplyGradients("w0", 0, TestGradients(1)).ok());
  const std::string path = TempPath("table_corrupt.pgt");
  ASSERT_TRUE(table->Checkpoint(path).ok());

  auto fresh = MakeTable({}, /*seed=*/5);
  const auto before = fresh->SaveState();
  auto unchanged = [&] {
    const auto now = fresh->SaveState();
    for (size_t i = 0; i < now.size(); ++i) {
      if (now[i].bytes != before[i].bytes) return false;
    }
    return true;
  };

  // Flip one byte in the middle of the file: the CRC catches it.
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(0, std::ios::end);
    const std::streamoff size = f.tellg();
    f.seekg(size / 2);
    char c;
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x20);
    f.seekp(size / 2);
    f.write(&c, 1);
  }
  EXPECT_FALSE(fresh->Restore(path).ok());
  EXPECT_TRUE(unchanged());
  EXPECT_FALSE(fresh->Restore(TempPath("does_not_exist.pgt")).ok());
  EXPECT_TRUE(unchanged());

  // A table with another layout (one shape differs) refuses the file.
  std::vector<TableTensor> tensors = TestTensors(1);
  tensors[2] = {{"b", {6}, true}, std::vector<float>(6, 0.5f)};
  TableConfig config;
  config.name = "D";
  auto other = ParameterTable::Create(config, tensors);
  ASSERT_TRUE(other.ok());
  const std::string good = TempPath("table_good.pgt");
  ASSERT_TRUE(table->Checkpoint(good).ok());
  const auto other_before = (*other)->SaveState();
  absl::Status st = (*other)->Restore(good);
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_NE(st.message().find("b"), std::string::npos);
  const auto other_after = (*other)->SaveState();
  for (size_t i = 0; i < other_after.size(); ++i) {
    EXPECT_EQ(other_after[i].bytes, other_before[i].bytes);
  }
  // Missing tensor (a table with one more tensor) and an extra one.
  tensors = TestTensors(1);
  tensors.push_back({{"extra", {2}, true}, {1, 2}});
  auto bigger = ParameterTable::Create(config, tensors);
  ASSERT_TRUE(bigger.ok());
  EXPECT_FALSE((*bigger)->Restore(good).ok());
  tensors = TestTensors(1);
  tensors.pop_back();
  auto smaller = ParameterTable::Create(config, tensors);
  ASSERT_TRUE(smaller.ok());
  EXPECT_FALSE((*smaller)->Restore(good).ok());
}

TEST_F(TableTest, CreateValidates) {
  TableConfig config;
  config.name = "G";
  auto dup = ParameterTable::Create(
      config, {{{"a", {1}, true}, {1}}, {{"a", {1}, true}, {1}}});
  EXPECT_FALSE(dup.ok());
  auto count = ParameterTable::Create(config, {{{"a", {2}, true}, {1}}});
  EXPECT_FALSE(count.ok());
  config.adam.lr = 0;
  EXPECT_FALSE(ParameterTable::Create(config, {}).ok());
}

TEST_F(TableTest, CreateRefusesAnUnknownStalenessPolicy) {
  TableConfig config;
  config.name = "D";
  config.rule.staleness_policy = "maybe";
  auto t = ParameterTable::Create(config, TestTensors(1));
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("unknown staleness policy 'maybe'"),
            std::string::npos)
      << t.status();
}

// ---------------------------------------------------------------------------
// EMA of the table (the G_ema view)
// ---------------------------------------------------------------------------

std::unique_ptr<ParameterTable> MakeEmaTable(float decay,
                                             const UpdateRule& rule = {}) {
  TableConfig config;
  config.name = "G";
  config.adam = {4e-4f, 0.0f, 0.999f, 1e-6f};
  config.rule = rule;
  config.ema_decay = decay;
  auto t = ParameterTable::Create(config, TestTensors(1));
  EXPECT_TRUE(t.ok()) << t.status();
  (*t)->RegisterWorker("w0");
  (*t)->RegisterWorker("w1");
  return std::move(t).value();
}

std::map<std::string, std::vector<float>> EmaValues(const ParameterTable& t) {
  std::map<std::string, std::vector<float>> out;
  auto snap = t.EmaSnapshot();
  EXPECT_TRUE(snap.ok()) << snap.status();
  if (!snap.ok()) return out;
  for (const TableTensor& x : snap->tensors) out[x.spec.name] = x.values;
  return out;
}

TEST_F(TableTest, EmaFollowsTheTrainersFormulaAfterEveryStep) {
  const float decay = 0.5f;  // small enough that the warm-up cap matters
  auto table = MakeEmaTable(decay);
  Reference ref = MakeReference(1);
  std::map<std::string, Tensor> ema;
  for (const TableTensor& t : TestTensors(1)) {
    if (t.spec.trainable)
      ema[t.spec.name] = Tensor::HostFrom(t.spec.shape, t.values);
  }
  // Before any step the EMA is the initial values.
  for (const auto& [name, values] : EmaValues(*table)) {
    EXPECT_EQ(values, ref.value.at(name).ToVector()) << name;
  }
  const TensorMap buffers = {{"bn.running_mean", {1, 2, 3, 4, 5}}};
  for (int t = 0; t < 12; ++t) {
    const TensorMap g = TestGradients(50 + t);
    auto r = table->ApplyGradients("w0", t, g, buffers);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_TRUE(r->applied);
    ReferenceStep(&ref, 4e-4f, g);
    // GanTrainer::UpdateEma: t = steps before this one.
    const float d =
        std::min(decay, static_cast<float>(t + 1) / static_cast<float>(t + 10));
    for (auto& [name, e] : ema) {
      EmaUpdateHost(d, ref.value.at(name).data(), e.data(), e.numel());
    }
  }
  ref.value["bn.running_mean"] =
      Tensor::HostFrom({5}, buffers.at("bn.running_mean"));
  ExpectEqualsReference(*table, ref);
  const auto got = EmaValues(*table);
  ASSERT_EQ(got.size(), 4u);
  for (const auto& [name, e] : ema) {
    EXPECT_EQ(got.at(name), e.ToVector()) << name;
    EXPECT_NE(got.at(name), ref.value.at(name).ToVector()) << name;
  }
  // Buffers are G's current ones, copied.
  EXPECT_EQ(got.at("bn.running_mean"), buffers.at("bn.running_mean"));
  auto snap = table->EmaSnapshot({"w"});
  ASSERT_TRUE(snap.ok());
  EXPECT_EQ(snap->version, 12);
  ASSERT_EQ(snap->tensors.size(), 1u);
  EXPECT_FALSE(table->EmaSnapshot({"nope"}).ok());
}

TEST_F(TableTest, SharedSnapshotsKeepTheirVersionAndCostNoCopy) {
  auto table = MakeEmaTable(0.9f);
  const TensorMap buffers = {{"bn.running_mean", {1, 2, 3, 4, 5}}};
  for (bool ema : {false, true}) {
    const int64_t v0 = table->version();
    auto shared = table->SharedSnapshot({}, ema);
    ASSERT_TRUE(shared.ok()) << shared.status();
    auto copied = ema ? table->EmaSnapshot() : table->Snapshot();
    ASSERT_TRUE(copied.ok());
    EXPECT_EQ(shared->version, v0);
    ASSERT_EQ(shared->tensors.size(), copied->tensors.size());
    std::vector<const float*> held;
    for (const SharedTableTensor& t : shared->tensors) {
      held.push_back(t.values.get());
    }
    // Steps while the snapshot is held write new buffers: the snapshot
    // still reads version v0, bit for bit.
    for (int k = 0; k < 3; ++k) {
      ASSERT_TRUE(table
                      ->ApplyGradients("w0", table->version(),
                                       TestGradients(700 + k), buffers)
                      .ok());
    }
    for (size_t i = 0; i < shared->tensors.size(); ++i) {
      const SharedTableTensor& t = shared->tensors[i];
      const std::vector<float> now(t.values.get(),
                                   t.values.get() + NumElements(t.spec.shape));
      EXPECT_EQ(now, copied->tensors[i].values) << t.spec.name;
    }
    auto later = table->SharedSnapshot({}, ema);
    ASSERT_TRUE(later.ok());
    EXPECT_EQ(later->version, v0 + 3);
    for (size_t i = 0; i < later->tensors.size(); ++i) {
      EXPECT_NE(later->tensors[i].values.get(), held[i])
          << later->tensors[i].spec.name;
    }
    // Released snapshots: the next step writes in place (no copy).
    std::vector<const float*> current;
    for (const SharedTableTensor& t : later->tensors) {
      current.push_back(t.values.get());
    }
    shared = absl::StatusOr<SharedTableSnapshot>(SharedTableSnapshot());
    later = absl::StatusOr<SharedTableSnapshot>(SharedTableSnapshot());
    ASSERT_TRUE(table
                    ->ApplyGradients("w0", table->version(), TestGradients(710),
                                     buffers)
                    .ok());
    auto after = table->SharedSnapshot({}, ema);
    ASSERT_TRUE(after.ok());
    for (size_t i = 0; i < after->tensors.size(); ++i) {
      EXPECT_EQ(after->tensors[i].values.get(), current[i])
          << after->tensors[i].spec.name;
    }
  }
  // The same errors as Snapshot.
  EXPECT_EQ(table->SharedSnapshot({"nope"}).status().code(),
            absl::StatusCode::kNotFound);
  auto no_ema = MakeTable({});
  EXPECT_EQ(no_ema->SharedSnapshot({}, /*ema=*/true).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(TableTest, EmaAlsoStepsOnSynchronousRounds) {
  auto table = MakeEmaTable(0.999f, {"accept", 0, 2});
  const auto initial = EmaValues(*table);
  ASSERT_TRUE(table->ApplyGradients("w0", 0, TestGradients(1)).ok());
  EXPECT_EQ(EmaValues(*table), initial);  // pending: no step, no EMA update
  ASSERT_TRUE(table->ApplyGradients("w1", 0, TestGradients(2)).ok());
  const auto values = Values(*table);
  const auto ema = EmaValues(*table);
  // First step: decay min(0.999, 1/10) = 0.1.
  const std::vector<float>& v0 = initial.at("w");
  for (size_t i = 0; i < v0.size(); ++i) {
    EXPECT_NEAR(ema.at("w")[i], 0.1f * v0[i] + 0.9f * values.at("w")[i], 1e-6);
  }
}

TEST_F(TableTest, EmaOffMeansNoEmaView) {
  auto table = MakeEmaTable(0.0f);
  EXPECT_FALSE(table->has_ema());
  auto snap = table->EmaSnapshot();
  EXPECT_EQ(snap.status().code(), absl::StatusCode::kFailedPrecondition);
  // No ema arrays in its state.
  for (const NamedArray& a : table->SaveState()) {
    EXPECT_EQ(a.name.find("/ema/"), std::string::npos) << a.name;
  }
  TableConfig bad;
  bad.name = "G";
  bad.ema_decay = 1.0f;
  EXPECT_FALSE(ParameterTable::Create(bad, {}).ok());
}

TEST_F(TableTest, EmaIsCheckpointedAndRestored) {
  auto table = MakeEmaTable(0.9f);
  for (int t = 0; t < 5; ++t) {
    ASSERT_TRUE(table->ApplyGradients("w0", t, TestGradients(60 + t)).ok());
  }
  const std::string path = ::testing::TempDir() + "/ema_table.pgt";
  ASSERT_TRUE(table->Checkpoint(path).ok());
  const auto saved_values = Values(*table);
  auto fresh = MakeEmaTable(0.9f);
  ASSERT_TRUE(fresh->Restore(path).ok());
  EXPECT_EQ(EmaValues(*fresh), EmaValues(*table));
  EXPECT_EQ(Values(*fresh), Values(*table));
  // The next step continues the same average (t = 5 on both).
  const TensorMap g = TestGradients(70);
  ASSERT_TRUE(table->ApplyGradients("w0", 5, g).ok());
  ASSERT_TRUE(fresh->ApplyGradients("w0", 5, g).ok());
  EXPECT_EQ(EmaValues(*fresh), EmaValues(*table));

  // A checkpoint without EMA (written with --ema_decay=0) restores into an
  // EMA table with the EMA starting at the restored values, and an EMA
  // checkpoint restores into a table without EMA.
  auto plain = MakeEmaTable(0.0f);
  ASSERT_TRUE(plain->Restore(path).ok());
  EXPECT_EQ(Values(*plain), saved_values);
  const std::string plain_path = ::testing::TempDir() + "/plain_table.pgt";
  ASSERT_TRUE(plain->Checkpoint(plain_path).ok());
  auto ema_from_plain = MakeEmaTable(0.9f);
  ASSERT_TRUE(ema_from_plain->Restore(plain_path).ok());
  EXPECT_EQ(EmaValues(*ema_from_plain), Values(*plain));
  std::remove(path.c_str());
  std::remove(plain_path.c_str());
}

// ---------------------------------------------------------------------------
// Worker leases (fake clock)
// ---------------------------------------------------------------------------

class LeaseTest : public TableTest {
 protected:
  std::unique_ptr<ParameterTable> MakeLeaseTable(const UpdateRule& rule,
                                                 bool register_both = true) {
    TableConfig config;
    config.name = "D";
    config.adam = {4e-4f, 0.0f, 0.999f, 1e-6f};
    config.rule = rule;
    config.worker_lease = absl::Seconds(30);
    auto t = ParameterTable::Create(config, TestTensors(1));
    EXPECT_TRUE(t.ok()) << t.status();
    (*t)->SetClockForTesting([this] { return now_; });
    (*t)->RegisterWorker("w0");
    if (register_both) (*t)->RegisterWorker("w1");
    return std::move(t).value();
  }
  absl::Time now_ = absl::FromUnixSeconds(1000);
};

TEST_F(LeaseTest, SilentWorkerIsDroppedAndComesBackByRenewal) {
  auto table = MakeLeaseTable({});
  now_ += absl::Seconds(20);
  EXPECT_TRUE(table->RenewLease("w0"));
  EXPECT_TRUE(table->ExpireLeases().dropped.empty());
  now_ += absl::Seconds(11);  // w1 silent 31 s, w0 11 s
  LeaseExpiry e = table->ExpireLeases();
  EXPECT_EQ(e.dropped, std::vector<std::string>{"w1"});
  EXPECT_FALSE(e.round_completed);
  EXPECT_FALSE(table->IsRegistered("w1"));
  EXPECT_TRUE(table->IsRegistered("w0"));
  TableStats s = table->Stats();
  EXPECT_EQ(s.registered_workers, std::vector<std::string>{"w0"});
  EXPECT_EQ(s.expired_leases, 1);
  // Exactly the lease is still alive; a never-registered worker stays out.
  now_ += absl::Seconds(30);
  EXPECT_TRUE(table->RenewLease("w0"));
  EXPECT_FALSE(table->RenewLease("stranger"));
  EXPECT_FALSE(table->IsRegistered("stranger"));
  // A dropped worker that comes back is registered again.
  EXPECT_TRUE(table->RenewLease("w1"));
  EXPECT_TRUE(table->IsRegistered("w1"));
  EXPECT_TRUE(table->ApplyGradients("w1", 0, TestGradients(1)).ok());
  // Leases off: nobody is ever dropped.
  auto forever = MakeTable({});
  EXPECT_TRUE(forever->ExpireLeases().dropped.empty());
}

TEST_F(LeaseTest, SyncRoundCompletesWithTheContributionsItHas) {
  auto table = MakeLeaseTable({"reject_above_bound", 0, 2});
  Reference ref = MakeReference(1);
  const TensorMap g0 = TestGradients(80);
  auto r = table->ApplyGradients("w0", 0, g0);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->applied);
  bool reached = false;
  std::thread waiter(
      [&] { reached = table->WaitForVersion(1, absl::Seconds(30)); });
  // w1 dies; w0 keeps renewing (a waiting pull does).
  now_ += absl::Seconds(25);
  EXPECT_TRUE(table->RenewLease("w0"));
  now_ += absl::Seconds(10);
  LeaseExpiry e = table->ExpireLeases();
  waiter.join();
  EXPECT_TRUE(reached);
  EXPECT_EQ(e.dropped, std::vector<std::string>{"w1"});
  EXPECT_TRUE(e.round_completed);
  EXPECT_EQ(e.round_contributions, 1);
  EXPECT_EQ(e.new_version, 1);
  ReferenceStep(&ref, 4e-4f, g0);  // the mean of one contribution
  ExpectEqualsReference(*table, ref);
  EXPECT_EQ(table->Stats().pending_contributions, 0);
  // Alone now: each push of w0 completes a round.
  const TensorMap g1 = TestGradients(81);
  r = table->ApplyGradients("w0", 1, g1);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->applied);
  ReferenceStep(&ref, 4e-4f, g1);
  ExpectEqualsReference(*table, ref);
  // w1 returns: rounds need both again.
  EXPECT_TRUE(table->RenewLease("w1"));
  r = table->ApplyGradients("w0", 2, TestGradients(82));
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->accepted);
  EXPECT_FALSE(r->applied);
  EXPECT_NE(r->reason.find("1 of 2"), std::string::npos) << r->reason;
}

TEST_F(LeaseTest, DeregisteredWorkerLeavesAtOnceAndForGood) {
  // Sync 2, leases never due: w1 asks to leave after w0 pushed, and the
  // round completes at once with w0's contribution (no lease wait).
  auto table = MakeLeaseTable({"reject_above_bound", 0, 2});
  Reference ref = MakeReference(1);
  const TensorMap g0 = TestGradients(70);
  auto r = table->ApplyGradients("w0", 0, g0);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->applied);
  LeaseExpiry e = table->DeregisterWorker("w1");
  EXPECT_EQ(e.dropped, std::vector<std::string>{"w1"});
  EXPECT_TRUE(e.round_completed);
  EXPECT_EQ(e.round_contributions, 1);
  EXPECT_EQ(e.new_version, 1);
  ReferenceStep(&ref, 4e-4f, g0);
  ExpectEqualsReference(*table, ref);
  TableStats s = table->Stats();
  EXPECT_EQ(s.registered_workers, std::vector<std::string>{"w0"});
  EXPECT_EQ(s.deregistered_workers, 1);
  EXPECT_EQ(s.expired_leases, 0);
  // It stays out: its late pull or push does not register it again, and
  // the push changes nothing.
  EXPECT_FALSE(table->RenewLease("w1"));
  EXPECT_FALSE(table->ApplyGradients("w1", 1, TestGradients(71)).ok());
  ExpectEqualsReference(*table, ref);
  // Leaving twice, or never registered: nothing happens.
  EXPECT_TRUE(table->DeregisterWorker("w1").dropped.empty());
  EXPECT_TRUE(table->DeregisterWorker("stranger").dropped.empty());
  EXPECT_EQ(table->Stats().deregistered_workers, 1);
  // Registering again is a fresh join.
  table->RegisterWorker("w1");
  EXPECT_TRUE(table->IsRegistered("w1"));
}

TEST_F(LeaseTest, DeregisterWorksWithLeasesOff) {
  auto table = MakeTable({"accept", 0, 2});
  table->RegisterWorker("w0");
  table->RegisterWorker("w1");
  ASSERT_TRUE(table->ApplyGradients("w1", 0, TestGradients(72)).ok());
  // w1 contributed and leaves: w0 alone now completes rounds.
  LeaseExpiry e = table->DeregisterWorker("w1");
  EXPECT_TRUE(e.round_completed);
  EXPECT_EQ(table->version(), 1);
  auto r = table->ApplyGradients("w0", 1, TestGradients(73));
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->applied);
}

TEST_F(LeaseTest, RoundWaitsWhileOtherContributorsAreAlive) {
  // Three workers, sync 3: w2 dies after w0 pushed; w1 is alive and has not
  // pushed, so the round waits for w1, then completes with w0 and w1.
  auto table = MakeLeaseTable({"accept", 0, 3});
  table->RegisterWorker("w2");
  const TensorMap g0 = TestGradients(90), g1 = TestGradients(91);
  ASSERT_TRUE(table->ApplyGradients("w0", 0, g0).ok());
  now_ += absl::Seconds(20);
  table->RenewLease("w0");
  table->RenewLease("w1");
  now_ += absl::Seconds(15);
  LeaseExpiry e = table->ExpireLeases();
  EXPECT_EQ(e.dropped, std::vector<std::string>{"w2"});
  EXPECT_FALSE(e.round_completed);
  EXPECT_EQ(table->version(), 0);
  auto r = table->ApplyGradients("w1", 0, g1);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->applied);
  TensorMap mean;
  for (const auto& [name, a] : g0) {
    std::vector<float> m(a.size());
    for (size_t i = 0; i < a.size(); ++i) m[i] = (a[i] + g1.at(name)[i]) / 2;
    mean[name] = m;
  }
  Reference ref = MakeReference(1);
  ReferenceStep(&ref, 4e-4f, mean);
  for (const auto& [name, values] : Values(*table)) {
    const std::vector<float> want = ref.value.at(name).ToVector();
    ASSERT_EQ(values.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      ASSERT_NEAR(values[i], want[i], 1e-6) << name;
    }
  }
}

TEST_F(LeaseTest, RoundsWaitForAllWorkersToJoinFirst) {
  // Only w0 has registered yet: its push waits for a second worker rather
  // than completing a round of one.
  auto table = MakeLeaseTable({"accept", 0, 2},
                              /*register_both=*/false);
  auto r = table->ApplyGradients("w0", 0, TestGradients(1));
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->applied);
  table->RegisterWorker("w1");
  r = table->ApplyGradients("w1", 0, TestGradients(2));
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->applied);
}

TEST_F(LeaseTest, RestoredWorkersGetAFreshLease) {
  auto table = MakeLeaseTable({"accept", 0, 2});
  const std::string path = ::testing::TempDir() + "/lease_table.pgt";
  ASSERT_TRUE(table->Checkpoint(path).ok());
  now_ += absl::Seconds(100);
  auto restored = MakeLeaseTable({"accept", 0, 2}, false);
  ASSERT_TRUE(restored->Restore(path).ok());
  EXPECT_TRUE(restored->ExpireLeases().dropped.empty());
  EXPECT_EQ(restored->Stats().registered_workers.size(), 2u);
  now_ += absl::Seconds(31);
  EXPECT_EQ(restored->ExpireLeases().dropped.size(), 2u);
  std::remove(path.c_str());
}

}  // namespace
TEST_F(TableTest, RepeatedPushIdIsAnsweredNotAppliedAgain) {
  auto table = MakeTable({});
  Reference ref = MakeReference(1);
  const TensorMap g1 = TestGradients(10), g2 = TestGradients(11);
  auto first = table->ApplyGradients("w0", 0, g1, {}, /*push_id=*/100);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(first->applied);
  EXPECT_FALSE(first->duplicate);
  ReferenceStep(&ref, 4e-4f, g1);
  // A retry (same id) after a lost response: the first result, no step.
  auto retry = table->ApplyGradients("w0", 0, g1, {}, 100);
  ASSERT_TRUE(retry.ok());
  EXPECT_TRUE(retry->duplicate);
  EXPECT_TRUE(retry->accepted);
  EXPECT_TRUE(retry->applied);
  EXPECT_EQ(retry->new_version, first->new_version);
  EXPECT_EQ(table->version(), 1);
  ExpectEqualsReference(*table, ref);
  // Another worker's ids are its own.
  ASSERT_TRUE(table->ApplyGradients("w1", 1, g2, {}, 100)->applied);
  ReferenceStep(&ref, 4e-4f, g2);
  // An older id from w0 (overtaken by push 100) is refused.
  auto old = table->ApplyGradients("w0", 2, g2, {}, 99);
  ASSERT_TRUE(old.ok());
  EXPECT_FALSE(old->accepted);
  EXPECT_FALSE(old->duplicate);
  EXPECT_NE(old->reason.find("older than the last push"), std::string::npos)
      << old->reason;
  EXPECT_EQ(table->Stats().rejected_pushes, 1);
  // A newer id and pushes without an id are applied.
  ASSERT_TRUE(table->ApplyGradients("w0", 2, g1, {}, 101)->applied);
  ReferenceStep(&ref, 4e-4f, g1);
  ASSERT_TRUE(table->ApplyGradients("w0", 3, g2)->applied);
  ASSERT_TRUE(table->ApplyGradients("w0", 4, g2)->applied);
  ReferenceStep(&ref, 4e-4f, g2);
  ReferenceStep(&ref, 4e-4f, g2);
  EXPECT_EQ(table->version(), 5);
  ExpectEqualsReference(*table, ref);
}

// The crash window a chaos run finds: a push applied, a checkpoint written,
// the shard killed before its answer reached the worker, which retries the
// push against the restarted shard. The checkpoint knows the push id: the
// retry is a duplicate, not a second step from a base the restored version
// no longer rules out.
TEST_F(TableTest, PushIdsSurviveARestoreSoARetryIsNotAppliedTwice) {
  auto table = MakeTable({});
  const TensorMap g = TestGradients(10);
  ASSERT_TRUE(table->ApplyGradients("w0", 0, g, {}, /*push_id=*/100)->applied);
  auto w1 = table->ApplyGradients("w1", 1, g, {}, /*push_id=*/7);
  ASSERT_TRUE(w1->applied);
  const std::string path = TempPath("table_push_ids.pgt");
  ASSERT_TRUE(table->Checkpoint(path).ok());

  auto restored = MakeTable({}, /*seed=*/77);
  ASSERT_TRUE(restored->Restore(path).ok());
  const auto before = Values(*restored);
  auto retry = restored->ApplyGradients("w1", 1, g, {}, 7);
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_TRUE(retry->duplicate);
  EXPECT_TRUE(retry->accepted);
  EXPECT_TRUE(retry->applied);
  EXPECT_EQ(retry->new_version, w1->new_version);
  EXPECT_EQ(retry->staleness, w1->staleness);
  EXPECT_EQ(restored->version(), 2);
  EXPECT_EQ(Values(*restored), before);
  // Overtaken ids stay refused; newer ones are applied.
  EXPECT_FALSE(restored->ApplyGradients("w0", 2, g, {}, 99)->accepted);
  EXPECT_TRUE(restored->ApplyGradients("w0", 2, g, {}, 101)->applied);
  EXPECT_EQ(restored->version(), 3);
  // Saved again, the ids round-trip exactly.
  const auto a = restored->SaveState();
  auto again = MakeTable({}, /*seed=*/5);
  ASSERT_TRUE(again->RestoreState(a).ok());
  const auto b = again->SaveState();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].bytes, b[i].bytes);
}

TEST_F(TableTest, MalformedPushIdsInAStateAreRefusedNamingThem) {
  auto table = MakeTable({});
  ASSERT_TRUE(table->ApplyGradients("w0", 0, TestGradients(1), {}, 5).ok());
  const std::vector<NamedArray> good = table->SaveState();
  for (const std::string bad :
       {"5 1 1 1 0\n", "x 1 1 1 0 w0\n", "5 2 1 1 0 w0\n", "0 1 1 1 0 w0\n",
        "5 1 1 1 0 w0\n6 1 1 2 0 w0\n"}) {
    std::vector<NamedArray> state = good;
    bool found = false;
    for (NamedArray& a : state) {
      if (a.name.size() >= 8 &&
          a.name.compare(a.name.size() - 8, 8, "push_ids") == 0) {
        a = *MakeUint8Array(a.name, {static_cast<int64_t>(bad.size())},
                            std::vector<uint8_t>(bad.begin(), bad.end()));
        found = true;
      }
    }
    ASSERT_TRUE(found);
    auto fresh = MakeTable({}, /*seed=*/5);
    const absl::Status st = fresh->RestoreState(state);
    EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << bad;
    EXPECT_NE(st.message().find("push_ids"), std::string::npos) << st;
    EXPECT_EQ(fresh->version(), 0);
  }
  // A state without push ids (written before they were kept) restores.
  std::vector<NamedArray> old;
  for (const NamedArray& a : good) {
    if (a.name.find("push_ids") == std::string::npos) old.push_back(a);
  }
  auto fresh = MakeTable({}, /*seed=*/5);
  ASSERT_TRUE(fresh->RestoreState(old).ok());
  EXPECT_EQ(fresh->version(), 1);
  EXPECT_TRUE(fresh->ApplyGradients("w0", 1, TestGradients(1), {}, 5)
                  ->applied);  // not known: applied
}

TEST_F(TableTest, RepeatedPushIdInASynchronousRoundStaysPending) {
  UpdateRule rule;
  rule.sync_workers = 2;
  auto table = MakeTable(rule);
  const TensorMap g = TestGradients(10);
  auto first = table->ApplyGradients("w0", 0, g, {}, 7);
  ASSERT_TRUE(first.ok());
  EXPECT_TRUE(first->accepted);
  EXPECT_FALSE(first->applied);
  auto retry = table->ApplyGradients("w0", 0, g, {}, 7);
  ASSERT_TRUE(retry.ok());
  EXPECT_TRUE(retry->duplicate);
  EXPECT_TRUE(retry->accepted);  // still counted once in the round
  EXPECT_EQ(table->Stats().pending_contributions, 1);
  EXPECT_EQ(table->Stats().rejected_pushes, 0);
  auto other = table->ApplyGradients("w1", 0, g, {}, 7);
  ASSERT_TRUE(other.ok());
  EXPECT_TRUE(other->applied);
  EXPECT_EQ(table->version(), 1);
}

}  // namespace paragan

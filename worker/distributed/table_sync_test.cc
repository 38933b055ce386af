// The worker's table pieces: placement slices, merging pulled slices into a
// ParamStore (validated before anything is written), push staging; and the
// batch providers' order.

#include "worker/distributed/table_sync.h"

#include <memory>
#include <set>

#include "common/placement.h"
#include "gtest/gtest.h"
#include "worker/distributed/batch_provider.h"
#include "worker/engine/model.h"

namespace paragan {
namespace {

struct Fixture {
  std::unique_ptr<Backend> backend = MakeCpuBackend(1);
  std::unique_ptr<GanModel> a, b;
  Fixture() {
    a = MakeModel(ModelConfig(), backend.get()).value();
    b = MakeModel(ModelConfig(), backend.get()).value();
    a->Initialize(1);
    b->Initialize(2);
  }
};

// The tensors of `store` that shard s of n holds, as the shards compute them.
absl::StatusOr<std::vector<TableTensor>> ShardSlice(ParamStore& store, int s,
                                                    int n) {
  return TensorsOnShard(NetworkTensors(store), s, n);
}

std::vector<float> Values(Backend* be, const Tensor& t) {
  return be->ToHost(t).ToVector();
}

// The slice of `store` on shard s as a pull returns it.
PulledTable AsPulled(ParamStore& store, int s, int n, int64_t version) {
  PulledTable p;
  p.version = version;
  std::vector<TableTensor> slice = ShardSlice(store, s, n).value();
  for (TableTensor& t : slice) {
    p.tensors[t.spec.name] = {t.spec.shape, std::move(t.values)};
  }
  return p;
}

TEST(TableSyncTest, LayoutCoversEveryTensorOnce) {
  Fixture f;
  for (ParamStore* store : {&f.a->generator(), &f.a->discriminator()}) {
    TableLayout layout = TableLayout::Create("X", *store, 3).value();
    std::set<std::string> seen;
    for (int s = 0; s < 3; ++s) {
      for (const TableTensorSpec& t : layout.on_shard(s)) {
        EXPECT_TRUE(seen.insert(t.name).second) << t.name;
      }
      // The same slice the shards compute.
      std::vector<TableTensor> slice = ShardSlice(*store, s, 3).value();
      ASSERT_EQ(slice.size(), layout.on_shard(s).size());
      for (size_t i = 0; i < slice.size(); ++i)
        EXPECT_EQ(slice[i].spec.name, layout.on_shard(s)[i].name);
    }
    EXPECT_EQ(seen.size(), store->params().size() + store->buffers().size());
  }
}

TEST(TableSyncTest, MergingEveryShardsSliceReproducesTheStore) {
  Fixture f;
  Backend* be = f.backend.get();
  for (auto [from, to] :
       {std::make_pair(&f.b->generator(), &f.a->generator()),
        std::make_pair(&f.b->discriminator(), &f.a->discriminator())}) {
    const int n = 3;
    TableLayout layout = TableLayout::Create("X", *to, n).value();
    for (int s = 0; s < n; ++s) {
      ASSERT_TRUE(
          MergePulled(layout.on_shard(s), AsPulled(*from, s, n, 7), to).ok());
    }
    for (const Param& p : from->params())
      EXPECT_EQ(Values(be, p.value), Values(be, to->FindParam(p.name)->value))
          << p.name;
    for (auto& [name, t] : from->buffers())
      EXPECT_EQ(Values(be, *t), Values(be, *to->FindBuffer(name))) << name;
  }
}

TEST(TableSyncTest, BadSlicesAreRejectedAndChangeNothing) {
  Fixture f;
  Backend* be = f.backend.get();
  ParamStore& to = f.a->discriminator();
  TableLayout layout = TableLayout::Create("D", to, 2).value();
  const std::vector<TableTensorSpec>& specs = layout.on_shard(1);
  ASSERT_GE(specs.size(), 2u);
  const PulledTable good = AsPulled(f.b->discriminator(), 1, 2, 3);
  auto snapshot = [&] {
    std::vector<std::vector<float>> out;
    for (const Param& p : to.params()) out.push_back(Values(be, p.value));
    for (auto& [name, t] : to.buffers()) out.push_back(Values(be, *t));
    return out;
  };
  const auto before = snapshot();

  PulledTable missing = good;
  missing.tensors.erase(specs.back().name);
  EXPECT_FALSE(MergePulled(specs, missing, &to).ok());

  PulledTable extra = good;
  extra.tensors["d.nosuch"] = {{1}, {0.f}};
  EXPECT_FALSE(MergePulled(specs, extra, &to).ok());

  PulledTable wrong_shape = good;
  PulledTensor& t = wrong_shape.tensors.at(specs.back().name);
  t.shape = {t.shape[0] + 1};
  t.values.push_back(0);
  absl::Status st = MergePulled(specs, wrong_shape, &to);
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(st.message().find(specs.back().name), std::string::npos) << st;

  EXPECT_EQ(snapshot(), before);
}

TEST(TableSyncTest, CheckShardInfoComparesNamesAndShapes) {
  Fixture f;
  TableLayout layout = TableLayout::Create("G", f.a->generator(), 2).value();
  v1::TableInfo info;
  for (const TableTensorSpec& s : layout.on_shard(1)) {
    v1::TensorSpec* t = info.add_tensors();
    t->set_name(s.name);
    for (int64_t d : s.shape) t->add_shape(d);
    t->set_trainable(s.trainable);
  }
  EXPECT_TRUE(layout.CheckShardInfo(1, info).ok());
  EXPECT_FALSE(layout.CheckShardInfo(0, info).ok());
  info.mutable_tensors(0)->set_shape(0, 12345);
  EXPECT_EQ(layout.CheckShardInfo(1, info).code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(TableSyncTest, StagingPushesGradientsAndBufferValues) {
  Fixture f;
  Backend* be = f.backend.get();
  ParamStore& d = f.a->discriminator();
  for (Param& p : d.params()) be->Fill(0.25f, &p.grad);
  TableLayout layout = TableLayout::Create("D", d, 1).value();
  PushStaging staging;
  staging.Stage(d);
  const std::vector<PushTensor> push = staging.ForShard(layout.on_shard(0));
  ASSERT_EQ(push.size(), d.params().size() + d.buffers().size());
  for (const PushTensor& t : push) {
    if (t.kind == v1::GRADIENT) {
      ASSERT_NE(d.FindParam(t.name), nullptr) << t.name;
      EXPECT_EQ(t.values[0], 0.25f);
    } else {
      Tensor* buf = d.FindBuffer(t.name);
      ASSERT_NE(buf, nullptr) << t.name;
      EXPECT_EQ(t.values[0], Values(be, *buf)[0]);
    }
  }
}

TEST(BatchProviderTest, PrefetchingKeepsTheLocalOrder) {
  auto make = [] {
    return std::make_unique<LocalBatchProvider>(
        MakeSyntheticDataset(50, 1, 32, 10, 3), 8, /*seed=*/4, 1);
  };
  auto plain = make();
  PrefetchingProvider prefetched(make(), 2);
  for (int i = 0; i < 15; ++i) {  // crosses two epochs
    Tensor x, y;
    std::vector<int> lx, ly;
    ASSERT_TRUE(plain->Next(&x, &lx).ok());
    ASSERT_TRUE(prefetched.Next(&y, &ly).ok());
    EXPECT_EQ(x.ToVector(), y.ToVector()) << "batch " << i;
    EXPECT_EQ(lx, ly);
  }
  prefetched.Cancel();
  Tensor z;
  std::vector<int> lz;
  // Either a batch already prefetched or CANCELLED; never a hang.
  (void)prefetched.Next(&z, &lz);
}

}  // namespace
}  // namespace paragan

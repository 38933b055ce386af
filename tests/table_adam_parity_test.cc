// A parameter-server table steps exactly as the engine's own Adam over a
// ParamStore with the same tensors (the table no longer links the engine, so
// the cross-check lives here).

#include <random>

#include "gtest/gtest.h"
#include "server/table.h"
#include "worker/engine/optimizer.h"
#include "worker/engine/params.h"

namespace paragan {
namespace {

std::vector<float> RandomVector(int64_t n, uint32_t seed, float scale) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> out(static_cast<size_t>(n));
  for (float& x : out) x = dist(gen);
  return out;
}

TEST(TableAdamParity, TableStepsAsTheEnginesAdam) {
  // "big" takes the kernel's parallel path.
  const std::vector<TableTensor> tensors = {
      {{"w", {3, 4}, true}, RandomVector(12, 1, 1.0f)},
      {{"big", {40000}, true}, RandomVector(40000, 2, 1.0f)},
      {{"b", {5}, true}, RandomVector(5, 3, 1.0f)},
  };
  auto backend = MakeCpuBackend(2);
  ParamStore store(backend.get());
  for (const TableTensor& t : tensors) {
    Param* p = store.AddParam(t.spec.name, t.spec.shape);
    backend->Upload(t.values.data(), &p->value);
  }
  Adam adam(&store, {4e-4f, 0.0f, 0.999f, 1e-6f});
  TableConfig config;
  config.name = "D";
  config.adam = {4e-4f, 0.0f, 0.999f, 1e-6f};
  auto table = ParameterTable::Create(config, tensors);
  ASSERT_TRUE(table.ok()) << table.status();
  (*table)->RegisterWorker("w0");
  for (int step = 0; step < 3; ++step) {
    TensorMap grads;
    for (const TableTensor& t : tensors) {
      grads[t.spec.name] =
          RandomVector(NumElements(t.spec.shape), 100 + step, 0.1f);
    }
    for (Param& p : store.params()) {
      backend->Upload(grads.at(p.name).data(), &p.grad);
    }
    adam.Step();
    auto r = (*table)->ApplyGradients("w0", step, grads);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(r->applied);
    EXPECT_EQ(r->new_version, step + 1);
  }
  auto snap = (*table)->Snapshot();
  ASSERT_TRUE(snap.ok());
  for (const TableTensor& x : snap->tensors) {
    EXPECT_EQ(x.values, store.FindParam(x.spec.name)->value.ToVector())
        << x.spec.name;
  }
  EXPECT_EQ((*table)->Stats().adam_step, adam.steps());
}

}  // namespace
}  // namespace paragan

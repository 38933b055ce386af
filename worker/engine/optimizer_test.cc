#include "worker/engine/optimizer.h"

#include <cmath>

#include "gtest/gtest.h"

namespace paragan {
namespace {

TEST(Adam, MatchesHandComputedSteps) {
  auto backend = MakeCpuBackend(1);
  ParamStore store(backend.get());
  Param* p = store.AddParam("w", {2});
  p->value.data()[0] = 1.0f;
  p->value.data()[1] = -2.0f;
  Adam adam(&store, {0.1f, 0.9f, 0.999f, 1e-8f});
  const float g1[2] = {0.5f, -3.0f}, g2[2] = {-1.0f, 2.0f};
  double m[2] = {0, 0}, v[2] = {0, 0}, w[2] = {1.0, -2.0};
  for (int t = 1; t <= 2; ++t) {
    const float* g = t == 1 ? g1 : g2;
    for (int i = 0; i < 2; ++i) {
      p->grad.data()[i] = g[i];
      m[i] = 0.9 * m[i] + 0.1 * g[i];
      v[i] = 0.999 * v[i] + 0.001 * g[i] * g[i];
      const double mhat = m[i] / (1 - std::pow(0.9, t));
      const double vhat = v[i] / (1 - std::pow(0.999, t));
      w[i] -= 0.1 * mhat / (std::sqrt(vhat) + 1e-8);
    }
    adam.Step();
    for (int i = 0; i < 2; ++i) EXPECT_NEAR(p->value.data()[i], w[i], 1e-6);
    if (t == 1) {
      // By hand: mhat = g, vhat = g^2, so the first step moves each weight
      // by lr * sign(g).
      EXPECT_NEAR(p->value.data()[0], 0.9, 1e-6);
      EXPECT_NEAR(p->value.data()[1], -1.9, 1e-6);
    }
  }
  EXPECT_EQ(adam.steps(), 2);
  EXPECT_EQ(adam.state().size(), 2u);
}

TEST(Ema, UpdatesTowardParameters) {
  auto backend = MakeCpuBackend(1);
  Tensor p = Tensor::HostFrom({2}, {1.0f, 3.0f});
  Tensor e = Tensor::HostFrom({2}, {0.0f, 1.0f});
  backend->EmaUpdate(0.9f, p, &e);
  EXPECT_FLOAT_EQ(e.data()[0], 0.1f);
  EXPECT_FLOAT_EQ(e.data()[1], 0.9f * 1.0f + 0.1f * 3.0f);
}

}  // namespace
}  // namespace paragan

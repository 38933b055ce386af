#include "common/optim_kernels.h"

#include <cmath>
#include <limits>
#include <vector>

#include "gtest/gtest.h"

namespace paragan {
namespace {

// Two steps of Adam against the textbook formula in double precision.
TEST(AdamUpdateHost, MatchesHandComputedSteps) {
  float w[2] = {1.0f, -2.0f}, mf[2] = {0, 0}, vf[2] = {0, 0};
  const float g1[2] = {0.5f, -3.0f}, g2[2] = {-1.0f, 2.0f};
  double m[2] = {0, 0}, v[2] = {0, 0}, wd[2] = {1.0, -2.0};
  for (int t = 1; t <= 2; ++t) {
    const float* g = t == 1 ? g1 : g2;
    for (int i = 0; i < 2; ++i) {
      m[i] = 0.9 * m[i] + 0.1 * g[i];
      v[i] = 0.999 * v[i] + 0.001 * g[i] * g[i];
      const double mhat = m[i] / (1 - std::pow(0.9, t));
      const double vhat = v[i] / (1 - std::pow(0.999, t));
      wd[i] -= 0.1 * mhat / (std::sqrt(vhat) + 1e-8);
    }
    AdamUpdateHost(0.1f, 0.9f, 0.999f, 1e-8f, t, g, w, mf, vf, 2);
    for (int i = 0; i < 2; ++i) EXPECT_NEAR(w[i], wd[i], 1e-6);
  }
}

// Large enough for the OpenMP team: every element steps alike, whatever
// thread ran it.
TEST(AdamUpdateHost, ParallelStepEqualsElementwiseStep) {
  const int64_t n = 100000;
  std::vector<float> g(n), w(n, 0.25f), m(n, 0.0f), v(n, 0.0f);
  for (int64_t i = 0; i < n; ++i) g[i] = (i % 7) - 3.0f;
  SetKernelThreads(2);
  AdamUpdateHost(1e-3f, 0.5f, 0.999f, 1e-8f, 1, g.data(), w.data(), m.data(),
                 v.data(), n);
  for (int64_t i = 0; i < n; ++i) {
    float w1 = 0.25f, m1 = 0, v1 = 0;
    AdamUpdateHost(1e-3f, 0.5f, 0.999f, 1e-8f, 1, &g[i], &w1, &m1, &v1, 1);
    ASSERT_EQ(w[i], w1) << i;
  }
}

TEST(EmaUpdateHost, MovesTowardParameters) {
  const float p[2] = {1.0f, 3.0f};
  float e[2] = {0.0f, 1.0f};
  EmaUpdateHost(0.9f, p, e, 2);
  EXPECT_FLOAT_EQ(e[0], 0.1f);
  EXPECT_FLOAT_EQ(e[1], 0.9f * 1.0f + 0.1f * 3.0f);
}

TEST(AllFiniteHost, FindsNanAndInfAnywhere) {
  std::vector<float> x(1000, 1.0f);
  EXPECT_TRUE(AllFiniteHost(x.data(), 1000));
  EXPECT_TRUE(AllFiniteHost(x.data(), 0));
  x[999] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_FALSE(AllFiniteHost(x.data(), 1000));
  x[999] = 1.0f;
  x[3] = -std::numeric_limits<float>::infinity();
  EXPECT_FALSE(AllFiniteHost(x.data(), 1000));
}

}  // namespace
}  // namespace paragan

// The CPU backend's convolutions, in every layout mode, against direct loops.

#include <cmath>
#include <vector>

#include "common/rng.h"
#include "gtest/gtest.h"
#include "worker/engine/backend.h"

namespace paragan {
namespace {

struct Case {
  ConvGeometry g;
  CpuConvLayout layout;
};

class ConvReference : public ::testing::TestWithParam<Case> {};

Tensor Random(const Shape& shape, Rng* rng) {
  Tensor t = Tensor::Host(shape);
  for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = rng->Normal();
  return t;
}

// y[n,o,i,j] = b[o] + sum_{c,p,q} x[n,c,i*s-pad+p,j*s-pad+q] w[o,c,p,q]
void NaiveConv(const ConvGeometry& g, const Tensor& x, const Tensor& w,
               const Tensor& b, std::vector<double>* y) {
  const int ho = g.out_h(), wo = g.out_w(), k = g.kernel;
  y->assign(static_cast<size_t>(g.n) * g.out_channels * ho * wo, 0.0);
  for (int n = 0; n < g.n; ++n)
    for (int o = 0; o < g.out_channels; ++o)
      for (int i = 0; i < ho; ++i)
        for (int j = 0; j < wo; ++j) {
          double s = b.data()[o];
          for (int c = 0; c < g.in_channels; ++c)
            for (int p = 0; p < k; ++p)
              for (int q = 0; q < k; ++q) {
                const int yy = i * g.stride - g.padding + p;
                const int xx = j * g.stride - g.padding + q;
                if (yy < 0 || yy >= g.in_h || xx < 0 || xx >= g.in_w) continue;
                s += double{x.data()[((n * g.in_channels + c) * g.in_h + yy) *
                                         g.in_w +
                                     xx]} *
                     w.data()[((o * g.in_channels + c) * k + p) * k + q];
              }
          (*y)[((n * g.out_channels + o) * ho + i) * wo + j] = s;
        }
}

TEST_P(ConvReference, AllPassesMatchDirectLoops) {
  const ConvGeometry g = GetParam().g;
  auto backend = MakeCpuBackend(2, GetParam().layout);
  Rng rng(3);
  Tensor x = Random({g.n, g.in_channels, g.in_h, g.in_w}, &rng);
  Tensor w = Random({g.out_channels, g.in_channels, g.kernel, g.kernel}, &rng);
  Tensor b = Random({g.out_channels}, &rng);
  Tensor dy = Random({g.n, g.out_channels, g.out_h(), g.out_w()}, &rng);
  // Forward.
  Tensor y = backend->Alloc(dy.shape());
  backend->ConvForward(g, x, w, &b, &y);
  std::vector<double> ref;
  NaiveConv(g, x, w, b, &ref);
  for (int64_t i = 0; i < y.numel(); ++i)
    ASSERT_NEAR(y.data()[i], ref[i], 1e-4 * (1 + std::abs(ref[i])))
        << "y[" << i << "]";
  // Backward passes are the adjoints: <dy, conv(x)> is bilinear, so
  // <dx, x'> = <dy, conv_nobias(x')> and <dw, w'> = <dy, conv_nobias_w'(x)>.
  Tensor dx = backend->Alloc(x.shape());
  backend->ConvBackwardData(g, dy, w, &dx);
  Tensor dw = backend->Alloc(w.shape());
  Tensor db = backend->Alloc(b.shape());
  backend->ConvBackwardWeights(g, x, dy, &dw, &db);
  Tensor zero = Tensor::Host(b.shape());
  for (int probe = 0; probe < 3; ++probe) {
    Tensor xp = Random(x.shape(), &rng), wp = Random(w.shape(), &rng);
    std::vector<double> yx, yw;
    NaiveConv(g, xp, w, zero, &yx);
    NaiveConv(g, x, wp, zero, &yw);
    double lhs_x = 0, rhs_x = 0, lhs_w = 0, rhs_w = 0, scale = 0;
    for (int64_t i = 0; i < x.numel(); ++i)
      lhs_x += double{dx.data()[i]} * xp.data()[i];
    for (int64_t i = 0; i < w.numel(); ++i)
      lhs_w += double{dw.data()[i]} * wp.data()[i];
    for (size_t i = 0; i < yx.size(); ++i) {
      rhs_x += dy.data()[i] * yx[i];
      rhs_w += dy.data()[i] * yw[i];
      scale += std::abs(dy.data()[i] * yx[i]);
    }
    EXPECT_NEAR(lhs_x, rhs_x, 1e-4 * scale) << "backward data";
    EXPECT_NEAR(lhs_w, rhs_w, 1e-4 * scale) << "backward weights";
  }
  for (int o = 0; o < g.out_channels; ++o) {
    double s = 0;
    for (int n = 0; n < g.n; ++n)
      for (int i = 0; i < g.out_h() * g.out_w(); ++i)
        s += dy.data()[(n * g.out_channels + o) * g.out_h() * g.out_w() + i];
    EXPECT_NEAR(db.data()[o], s, 1e-3) << "bias grad " << o;
  }
}

std::vector<Case> Cases() {
  std::vector<Case> out;
  for (CpuConvLayout l : {CpuConvLayout::kCanonical, CpuConvLayout::kBlocked,
                          CpuConvLayout::kAuto}) {
    out.push_back({{4, 1, 16, 16, 16, 4, 2, 1}, l});  // DCGAN D conv1 shape
    out.push_back({{2, 32, 8, 8, 48, 3, 1, 1}, l});   // BigGAN 3x3
    out.push_back({{3, 16, 6, 6, 32, 1, 1, 0}, l});   // 1x1 shortcut
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(Layouts, ConvReference, ::testing::ValuesIn(Cases()));

TEST(ParseCpuConvLayout, NamesAndErrors) {
  EXPECT_EQ(*ParseCpuConvLayout("auto"), CpuConvLayout::kAuto);
  EXPECT_EQ(*ParseCpuConvLayout("canonical"), CpuConvLayout::kCanonical);
  auto bad = ParseCpuConvLayout("nhwc");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("nhwc"), absl::string_view::npos);
}

}  // namespace
}  // namespace paragan

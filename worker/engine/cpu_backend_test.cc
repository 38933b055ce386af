// The CPU backend's convolutions (square and rectangular), in every layout
// mode, its pooling and its bilinear resize, against direct loops.

#include <cmath>
#include <limits>
#include <string>
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

// y[n,o,i,j] = b[o] + sum_{c,p,q} x[n,c,i*s-ph+p,j*s-pw+q] w[o,c,p,q]
void NaiveConv(const ConvGeometry& g, const Tensor& x, const Tensor& w,
               const Tensor& b, std::vector<double>* y) {
  const int ho = g.out_h(), wo = g.out_w(), kh = g.kh(), kw = g.kw();
  y->assign(static_cast<size_t>(g.n) * g.out_channels * ho * wo, 0.0);
  for (int n = 0; n < g.n; ++n)
    for (int o = 0; o < g.out_channels; ++o)
      for (int i = 0; i < ho; ++i)
        for (int j = 0; j < wo; ++j) {
          double s = b.data()[o];
          for (int c = 0; c < g.in_channels; ++c)
            for (int p = 0; p < kh; ++p)
              for (int q = 0; q < kw; ++q) {
                const int yy = i * g.stride - g.ph() + p;
                const int xx = j * g.stride - g.pw() + q;
                if (yy < 0 || yy >= g.in_h || xx < 0 || xx >= g.in_w) continue;
                s += double{x.data()[((n * g.in_channels + c) * g.in_h + yy) *
                                         g.in_w +
                                     xx]} *
                     w.data()[((o * g.in_channels + c) * kh + p) * kw + q];
              }
          (*y)[((n * g.out_channels + o) * ho + i) * wo + j] = s;
        }
}

TEST_P(ConvReference, AllPassesMatchDirectLoops) {
  const ConvGeometry g = GetParam().g;
  auto backend = MakeCpuBackend(2, GetParam().layout);
  Rng rng(3);
  Tensor x = Random({g.n, g.in_channels, g.in_h, g.in_w}, &rng);
  Tensor w = Random({g.out_channels, g.in_channels, g.kh(), g.kw()}, &rng);
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
    // InceptionV3's rectangular and stride-2 convolutions (all passes: the
    // adjoint checks above are the gradient check of the backward ones).
    out.push_back({ConvGeometry::Rect(2, 6, 9, 11, 5, 1, 7, 1, 0, 3), l});
    out.push_back({ConvGeometry::Rect(2, 6, 9, 11, 5, 7, 1, 1, 3, 0), l});
    out.push_back({ConvGeometry::Rect(2, 8, 6, 5, 7, 1, 3, 1, 0, 1), l});
    out.push_back({ConvGeometry::Rect(2, 8, 6, 5, 7, 3, 1, 1, 1, 0), l});
    out.push_back({ConvGeometry::Rect(1, 3, 7, 6, 4, 2, 5, 2, 1, 0), l});
    out.push_back({{2, 3, 13, 12, 8, 3, 2, 0}, l});  // 3x3 stride 2, no pad
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(Layouts, ConvReference, ::testing::ValuesIn(Cases()));

TEST(ConvGeometry, RectangularAndSquareSpellingsAgree) {
  const ConvGeometry square{2, 3, 9, 9, 4, 3, 1, 1};
  EXPECT_TRUE(square.square());
  EXPECT_EQ(square.kh(), 3);
  EXPECT_EQ(square.pw(), 1);
  EXPECT_EQ(ConvGeometry::Rect(2, 3, 9, 9, 4, 3, 3, 1, 1, 1), square);
  const ConvGeometry r = ConvGeometry::Rect(2, 3, 9, 10, 4, 1, 7, 1, 0, 3);
  EXPECT_FALSE(r.square());
  EXPECT_EQ(r.out_h(), 9);
  EXPECT_EQ(r.out_w(), 10);
  EXPECT_FALSE(r == square);
  // The same shape reaches the same cached primitive either way: run both
  // spellings and compare.
  auto backend = MakeCpuBackend(1, CpuConvLayout::kCanonical);
  Rng rng(4);
  Tensor x = Random({2, 3, 9, 9}, &rng), w = Random({4, 3, 3, 3}, &rng);
  Tensor y1 = backend->Alloc({2, 4, 9, 9}), y2 = backend->Alloc({2, 4, 9, 9});
  backend->ConvForward(square, x, w, nullptr, &y1);
  backend->ConvForward(ConvGeometry::Rect(2, 3, 9, 9, 4, 3, 3, 1, 1, 1), x, w,
                       nullptr, &y2);
  for (int64_t i = 0; i < y1.numel(); ++i)
    ASSERT_EQ(y1.data()[i], y2.data()[i]) << i;
}

// Pooling by its definition: the window over the zero- (average) or
// -inf-padded (max) plane, divided by k*k or by the in-bounds count.
std::vector<double> NaivePool(const PoolGeometry& g, const Tensor& x) {
  std::vector<double> y;
  for (int p = 0; p < g.n * g.channels; ++p)
    for (int i = 0; i < g.out_h(); ++i)
      for (int j = 0; j < g.out_w(); ++j) {
        double sum = 0, mx = -std::numeric_limits<double>::infinity();
        int count = 0;
        for (int a = 0; a < g.kernel; ++a)
          for (int b = 0; b < g.kernel; ++b) {
            const int r = i * g.stride - g.padding + a;
            const int c = j * g.stride - g.padding + b;
            if (r < 0 || r >= g.in_h || c < 0 || c >= g.in_w) continue;
            const double v = x.data()[(p * g.in_h + r) * g.in_w + c];
            sum += v;
            mx = std::max(mx, v);
            ++count;
          }
        switch (g.mode) {
          case PoolMode::kMax:
            y.push_back(mx);
            break;
          case PoolMode::kAvgInclude:
            y.push_back(sum / (g.kernel * g.kernel));
            break;
          case PoolMode::kAvgExclude:
            y.push_back(sum / count);
            break;
        }
      }
  return y;
}

TEST(Pool2d, MatchesDirectLoops) {
  auto backend = MakeCpuBackend(2);
  Rng rng(6);
  struct Win {
    int h, w, k, s, p;
  };
  // InceptionV3's pools (3x3 stride 1 pad 1; 3x3 stride 2), even and odd
  // sides, windows that do not tile the input, padding == kernel / 2.
  for (const Win& v : std::vector<Win>{{35, 35, 3, 1, 1},
                                       {9, 8, 3, 2, 0},
                                       {10, 7, 3, 2, 1},
                                       {6, 6, 2, 2, 0},
                                       {5, 9, 4, 3, 2},
                                       {3, 3, 3, 1, 0},
                                       {1, 1, 1, 1, 0}})
    for (PoolMode mode :
         {PoolMode::kMax, PoolMode::kAvgInclude, PoolMode::kAvgExclude}) {
      PoolGeometry g;
      g.n = 2;
      g.channels = 3;
      g.in_h = v.h;
      g.in_w = v.w;
      g.kernel = v.k;
      g.stride = v.s;
      g.padding = v.p;
      g.mode = mode;
      SCOPED_TRACE(testing::Message()
                   << v.h << "x" << v.w << " k" << v.k << " s" << v.s << " p"
                   << v.p << " mode " << static_cast<int>(mode));
      Tensor x = Random({g.n, g.channels, g.in_h, g.in_w}, &rng);
      Tensor y = backend->Alloc({g.n, g.channels, g.out_h(), g.out_w()});
      backend->Pool2dForward(g, x, &y);
      const std::vector<double> ref = NaivePool(g, x);
      ASSERT_EQ(static_cast<int64_t>(ref.size()), y.numel());
      for (int64_t i = 0; i < y.numel(); ++i)
        ASSERT_NEAR(y.data()[i], ref[i], 1e-6 * (1 + std::abs(ref[i]))) << i;
    }
}

TEST(Pool2d, PyTorchValues) {
  // F.avg_pool2d / F.max_pool2d(kernel 3, stride 1, padding 1) of
  // arange(16).reshape(4, 4), from PyTorch 1.13.
  auto backend = MakeCpuBackend(1);
  Tensor x = Tensor::Host({1, 1, 4, 4});
  for (int i = 0; i < 16; ++i) x.data()[i] = static_cast<float>(i);
  PoolGeometry g;
  g.n = g.channels = 1;
  g.in_h = g.in_w = 4;
  g.kernel = 3;
  g.stride = 1;
  g.padding = 1;
  const std::vector<float> exclude = {2.5, 3, 4,  4.5,  4.5,  5,  6,  6.5,
                                      8.5, 9, 10, 10.5, 10.5, 11, 12, 12.5};
  const std::vector<float> include = {
      10.0f / 9, 2, 24.0f / 9, 2, 3,         5,         6, 39.0f / 9,
      51.0f / 9, 9, 10,        7, 42.0f / 9, 66.0f / 9, 8, 50.0f / 9};
  const std::vector<float> max_neg = {-0.f, -0.f, -1, -2, -0.f, -0.f, -1, -2,
                                      -4,   -4,   -5, -6, -8,   -8,   -9, -10};
  Tensor y = backend->Alloc({1, 1, 4, 4});
  g.mode = PoolMode::kAvgExclude;
  backend->Pool2dForward(g, x, &y);
  for (int i = 0; i < 16; ++i) EXPECT_FLOAT_EQ(y.data()[i], exclude[i]) << i;
  g.mode = PoolMode::kAvgInclude;
  backend->Pool2dForward(g, x, &y);
  for (int i = 0; i < 16; ++i) EXPECT_FLOAT_EQ(y.data()[i], include[i]) << i;
  Tensor neg = Tensor::Host({1, 1, 4, 4});
  for (int i = 0; i < 16; ++i) neg.data()[i] = -x.data()[i];
  g.mode = PoolMode::kMax;
  backend->Pool2dForward(g, neg, &y);
  for (int i = 0; i < 16; ++i) EXPECT_EQ(y.data()[i], max_neg[i]) << i;
}

TEST(Pool2dDeathTest, RefusesPaddingOverHalfTheKernel) {
  auto backend = MakeCpuBackend(1);
  PoolGeometry g;
  g.n = g.channels = 1;
  g.in_h = g.in_w = 4;
  g.kernel = 3;
  g.padding = 2;
  Tensor x = backend->Zeros({1, 1, 4, 4});
  Tensor y = backend->Alloc({1, 1, g.out_h(), g.out_w()});
  EXPECT_DEATH(backend->Pool2dForward(g, x, &y), "padding <= kernel / 2");
}

// The half-pixel rule by its definition, in double: source coordinate
// (o + 0.5) * in / out - 0.5, clamped at 0; neighbours clamped at the edge.
std::vector<double> NaiveResize(const Tensor& x, int ho, int wo) {
  const int planes = static_cast<int>(x.dim(0) * x.dim(1));
  const int h = static_cast<int>(x.dim(2)), w = static_cast<int>(x.dim(3));
  auto src = [](int o, int in, int out, int* i0, int* i1, double* l) {
    double s = (o + 0.5) * in / out - 0.5;
    if (s < 0) s = 0;
    *i0 = static_cast<int>(std::floor(s));
    *i1 = std::min(*i0 + 1, in - 1);
    *l = s - *i0;
  };
  std::vector<double> y;
  for (int p = 0; p < planes; ++p)
    for (int i = 0; i < ho; ++i)
      for (int j = 0; j < wo; ++j) {
        int r0, r1, c0, c1;
        double lr, lc;
        src(i, h, ho, &r0, &r1, &lr);
        src(j, w, wo, &c0, &c1, &lc);
        auto at = [&](int r, int c) {
          return double{x.data()[(p * h + r) * w + c]};
        };
        y.push_back((1 - lr) * ((1 - lc) * at(r0, c0) + lc * at(r0, c1)) +
                    lr * ((1 - lc) * at(r1, c0) + lc * at(r1, c1)));
      }
  return y;
}

TEST(ResizeBilinear, MatchesDefinition) {
  auto backend = MakeCpuBackend(2);
  Rng rng(8);
  struct Sizes {
    int h, w, ho, wo;
  };
  // Up to InceptionV3's 299 from Fashion-MNIST's 32 and 28, down, mixed,
  // 1-pixel sides, identity.
  for (const Sizes& v : std::vector<Sizes>{{32, 32, 299, 299},
                                           {28, 28, 299, 299},
                                           {64, 48, 299, 299},
                                           {512, 300, 299, 299},
                                           {7, 5, 3, 11},
                                           {1, 1, 4, 3},
                                           {5, 1, 2, 4},
                                           {9, 9, 9, 9}}) {
    SCOPED_TRACE(testing::Message()
                 << v.h << "x" << v.w << " -> " << v.ho << "x" << v.wo);
    Tensor x = Random({2, 3, v.h, v.w}, &rng);
    Tensor y = backend->Alloc({2, 3, v.ho, v.wo});
    backend->ResizeBilinearForward(x, &y);
    const std::vector<double> ref = NaiveResize(x, v.ho, v.wo);
    double max_err = 0, max_x = 0;
    for (int64_t i = 0; i < y.numel(); ++i)
      max_err = std::max(max_err, std::abs(y.data()[i] - ref[i]));
    for (int64_t i = 0; i < x.numel(); ++i)
      max_x = std::max(max_x, double{std::abs(x.data()[i])});
    // Float source coordinates (as PyTorch computes them) move the weights
    // by a few ulps of the coordinate, which grows with the input side.
    EXPECT_LE(max_err, 1e-6 + 1e-6 * std::max(v.h, v.w) * 2 * max_x)
        << "max error";
    if (v.h == v.ho && v.w == v.wo) {
      for (int64_t i = 0; i < y.numel(); ++i)
        ASSERT_EQ(y.data()[i], x.data()[i]) << "identity " << i;
    }
  }
}

TEST(ResizeBilinear, PyTorchValues) {
  // F.interpolate(size, mode='bilinear', align_corners=False), PyTorch 1.13.
  auto backend = MakeCpuBackend(1);
  Tensor x = Tensor::HostFrom({1, 1, 2, 2}, {1, 2, 3, 4});
  Tensor y = backend->Alloc({1, 1, 4, 4});
  backend->ResizeBilinearForward(x, &y);
  const std::vector<float> up = {1,   1.25, 1.75, 2,   1.5, 1.75, 2.25, 2.5,
                                 2.5, 2.75, 3.25, 3.5, 3,   3.25, 3.75, 4};
  for (int i = 0; i < 16; ++i) EXPECT_FLOAT_EQ(y.data()[i], up[i]) << i;
  Tensor x2 = Tensor::Host({1, 1, 3, 5});
  for (int i = 0; i < 15; ++i) x2.data()[i] = static_cast<float>(i);
  Tensor y2 = backend->Alloc({1, 1, 2, 7});
  backend->ResizeBilinearForward(x2, &y2);
  const std::vector<float> mixed = {1.25f,
                                    1.821428656578064f,
                                    2.5357143878936768f,
                                    3.25f,
                                    3.9642858505249023f,
                                    4.678571701049805f,
                                    5.25f,
                                    8.75f,
                                    9.321428298950195f,
                                    10.035714149475098f,
                                    10.75f,
                                    11.464285850524902f,
                                    12.178571701049805f,
                                    12.75f};
  for (int i = 0; i < 14; ++i) EXPECT_NEAR(y2.data()[i], mixed[i], 2e-6) << i;
}

TEST(ParseCpuConvLayout, NamesAndErrors) {
  EXPECT_EQ(*ParseCpuConvLayout("auto"), CpuConvLayout::kAuto);
  EXPECT_EQ(*ParseCpuConvLayout("canonical"), CpuConvLayout::kCanonical);
  auto bad = ParseCpuConvLayout("nhwc");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("nhwc"), absl::string_view::npos);
}

}  // namespace
}  // namespace paragan

// Every CUDA backend op against the CPU backend on the same random inputs,
// convolutions in every layout and precision, and the channels-last
// conversions round trip. Skips (with the reason) where no GPU is present.
//
// Tolerances are relative to the largest magnitude of the reference output:
// strict fp32 differs only by summation order (2e-5), TF32 products keep a
// 10-bit mantissa (2^-11 relative per product, accumulated over a few
// hundred terms: 5e-3), bf16 operands an 7-bit one (2^-8: 2e-2).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "common/rng.h"
#include "gtest/gtest.h"
#include "worker/engine/backend.h"
#include "worker/engine/cuda_kernels.h"
#include "worker/engine/gpu_test_util.h"

namespace paragan {
namespace {

Tensor RandomHost(const Shape& shape, Rng* rng, float scale = 1.0f) {
  Tensor t = Tensor::Host(shape);
  for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = scale * rng->Normal();
  return t;
}

// max |a - b| / max(max |a|, 1e-3) over host tensor a and any-device b.
double RelError(const Tensor& a, Backend* b_backend, const Tensor& b) {
  Tensor bh = b.device() == Device::kCpu ? b : b_backend->ToHost(b);
  EXPECT_EQ(a.numel(), bh.numel());
  double max_diff = 0, max_ref = 1e-3;
  for (int64_t i = 0; i < a.numel(); ++i) {
    max_diff =
        std::max(max_diff, double{std::fabs(a.data()[i] - bh.data()[i])});
    max_ref = std::max(max_ref, double{std::fabs(a.data()[i])});
  }
  return max_diff / max_ref;
}

class CudaOps : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!HaveGpu()) return;
    cpu_ = MakeCpuBackend(2, CpuConvLayout::kCanonical);
    BackendOptions o;
    o.gpu_layout = GpuConvLayout::kNchw;
    o.gpu_precision = GpuPrecision::kFp32;
    auto gpu = MakeBackend("cuda", o);
    ASSERT_TRUE(gpu.ok()) << gpu.status();
    gpu_ = std::move(*gpu);
  }
  // Host copy on the CPU backend, device copy on the GPU.
  std::pair<Tensor, Tensor> Pair(const Shape& shape, float scale = 1.0f) {
    Tensor h = RandomHost(shape, &rng_, scale);
    return {cpu_->Clone(h), gpu_->FromHost(h)};
  }
  void Expect(const Tensor& cpu, const Tensor& gpu, double tol,
              const std::string& what) {
    EXPECT_LE(RelError(cpu, gpu_.get(), gpu), tol) << what;
  }

  Rng rng_{11};
  std::unique_ptr<Backend> cpu_, gpu_;
};

TEST_F(CudaOps, MemoryAndElementwise) {
  PARAGAN_SKIP_WITHOUT_GPU();
  auto [a_c, a_g] = Pair({3, 5, 7, 9});
  auto [b_c, b_g] = Pair({3, 5, 7, 9});
  // Round trip through the device is exact.
  EXPECT_EQ(RelError(a_c, gpu_.get(), a_g), 0.0);
  Tensor y_c = cpu_->Alloc(a_c.shape()), y_g = gpu_->Alloc(a_g.shape());
  cpu_->Axpby(0.3f, a_c, -1.7f, b_c, &y_c);
  gpu_->Axpby(0.3f, a_g, -1.7f, b_g, &y_g);
  Expect(y_c, y_g, 1e-6, "Axpby");
  cpu_->Scale(2.5f, &y_c);
  gpu_->Scale(2.5f, &y_g);
  Expect(y_c, y_g, 1e-6, "Scale");
  cpu_->Fill(0.25f, &y_c);
  gpu_->Fill(0.25f, &y_g);
  Expect(y_c, y_g, 0, "Fill");
  Tensor c_g = gpu_->Clone(a_g);
  Expect(a_c, c_g, 0, "Clone");
  EXPECT_NEAR(cpu_->Dot(a_c, b_c), gpu_->Dot(a_g, b_g),
              1e-4 * (1 + std::fabs(cpu_->Dot(a_c, b_c))));
  EXPECT_TRUE(gpu_->AllFinite(a_g));
  Tensor bad = RandomHost({1000}, &rng_);
  bad.data()[777] = std::nanf("");
  EXPECT_FALSE(gpu_->AllFinite(gpu_->FromHost(bad)));
  bad.data()[777] = INFINITY;
  EXPECT_FALSE(gpu_->AllFinite(gpu_->FromHost(bad)));
  for (Activation act : {Activation::kIdentity, Activation::kRelu,
                         Activation::kLeakyRelu, Activation::kTanh}) {
    cpu_->ActivationForward(act, 0.2f, a_c, &y_c);
    gpu_->ActivationForward(act, 0.2f, a_g, &y_g);
    Expect(y_c, y_g, 1e-6, "activation forward");
    Tensor dx_c = cpu_->Alloc(a_c.shape()), dx_g = gpu_->Alloc(a_g.shape());
    cpu_->ActivationBackward(act, 0.2f, a_c, y_c, b_c, &dx_c);
    gpu_->ActivationBackward(act, 0.2f, a_g, y_g, b_g, &dx_g);
    Expect(dx_c, dx_g, 1e-6, "activation backward");
  }
}

TEST_F(CudaOps, MatrixProducts) {
  PARAGAN_SKIP_WITHOUT_GPU();
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      const int m = 37, n = 53, k = 129;
      auto [a_c, a_g] = Pair({ta ? k : m, ta ? m : k});
      auto [b_c, b_g] = Pair({tb ? n : k, tb ? k : n});
      auto [c_c, c_g] = Pair({m, n});
      cpu_->Gemm(ta, tb, m, n, k, 0.7f, a_c.data(), b_c.data(), 0.5f,
                 c_c.data());
      gpu_->Gemm(ta, tb, m, n, k, 0.7f, a_g.data(), b_g.data(), 0.5f,
                 c_g.data());
      Expect(c_c, c_g, 2e-5,
             "Gemm ta=" + std::to_string(ta) + " tb=" + std::to_string(tb));
      const int batch = 3;
      auto [ba_c, ba_g] = Pair({batch, ta ? k : m, ta ? m : k});
      auto [bb_c, bb_g] = Pair({batch, tb ? n : k, tb ? k : n});
      Tensor bc_c = cpu_->Zeros({batch, m, n}),
             bc_g = gpu_->Zeros({batch, m, n});
      cpu_->BatchedGemm(batch, ta, tb, m, n, k, 1.0f, ba_c.data(), m * k,
                        bb_c.data(), k * n, 0.0f, bc_c.data(), m * n);
      gpu_->BatchedGemm(batch, ta, tb, m, n, k, 1.0f, ba_g.data(), m * k,
                        bb_g.data(), k * n, 0.0f, bc_g.data(), m * n);
      Expect(bc_c, bc_g, 2e-5, "BatchedGemm");
    }
  // Bias rows and row dots.
  auto [y_c, y_g] = Pair({16, 40});
  auto [bias_c, bias_g] = Pair({40});
  cpu_->AddRowBias(bias_c, &y_c);
  gpu_->AddRowBias(bias_g, &y_g);
  Expect(y_c, y_g, 1e-6, "AddRowBias");
  Tensor db_c = cpu_->Alloc({40}), db_g = gpu_->Alloc({40});
  cpu_->RowBiasGrad(y_c, &db_c);
  gpu_->RowBiasGrad(y_g, &db_g);
  Expect(db_c, db_g, 1e-5, "RowBiasGrad");
  auto [z_c, z_g] = Pair({16, 40});
  Tensor r_c = cpu_->Alloc({16}), r_g = gpu_->Alloc({16});
  cpu_->RowDot(y_c, z_c, &r_c);
  gpu_->RowDot(y_g, z_g, &r_g);
  Expect(r_c, r_g, 1e-5, "RowDot");
}

TEST_F(CudaOps, NormalizationAndAffine) {
  PARAGAN_SKIP_WITHOUT_GPU();
  for (Shape shape : {Shape{8, 6, 5, 7}, Shape{32, 12}, Shape{64, 3, 16, 16}}) {
    const int64_t c = shape[1];
    auto [x_c, x_g] = Pair(shape, 3.0f);
    Tensor m_c = cpu_->Alloc({c}), m_g = gpu_->Alloc({c});
    Tensor s_c = cpu_->Alloc({c}), s_g = gpu_->Alloc({c});
    Tensor xh_c = cpu_->Alloc(shape), xh_g = gpu_->Alloc(shape);
    cpu_->BatchNormStats(x_c, 1e-5f, &m_c, &s_c, &xh_c);
    gpu_->BatchNormStats(x_g, 1e-5f, &m_g, &s_g, &xh_g);
    Expect(m_c, m_g, 1e-5, "BN mean");
    Expect(s_c, s_g, 1e-5, "BN inv_std");
    Expect(xh_c, xh_g, 1e-5, "BN xhat");
    cpu_->BatchNormApply(x_c, m_c, s_c, &xh_c);
    gpu_->BatchNormApply(x_g, m_g, s_g, &xh_g);
    Expect(xh_c, xh_g, 1e-5, "BN apply");
    auto [rm_c, rm_g] = Pair({c});
    auto [rv_c, rv_g] = Pair({c});
    cpu_->UpdateRunningStats(m_c, s_c, 1e-5f, x_c.numel() / c, 0.1f, &rm_c,
                             &rv_c);
    gpu_->UpdateRunningStats(m_g, s_g, 1e-5f, x_g.numel() / c, 0.1f, &rm_g,
                             &rv_g);
    Expect(rm_c, rm_g, 1e-5, "running mean");
    Expect(rv_c, rv_g, 1e-5, "running var");
    Tensor is_c = cpu_->Alloc({c}), is_g = gpu_->Alloc({c});
    Tensor var_h = Tensor::Host({c});
    for (int64_t i = 0; i < c; ++i) var_h.data()[i] = 0.5f + i;
    cpu_->InvStd(cpu_->Clone(var_h), 1e-5f, &is_c);
    gpu_->InvStd(gpu_->FromHost(var_h), 1e-5f, &is_g);
    Expect(is_c, is_g, 1e-6, "InvStd");
    for (bool per_sample : {false, true}) {
      const Shape gshape = per_sample ? Shape{shape[0], c} : Shape{c};
      auto [g_c, g_g] = Pair(gshape);
      auto [b_c, b_g] = Pair(gshape);
      Tensor y_c = cpu_->Alloc(shape), y_g = gpu_->Alloc(shape);
      cpu_->ChannelAffine(xh_c, g_c, b_c, &y_c);
      gpu_->ChannelAffine(xh_g, g_g, b_g, &y_g);
      Expect(y_c, y_g, 1e-6, "ChannelAffine");
      auto [dy_c, dy_g] = Pair(shape);
      Tensor dxh_c = cpu_->Alloc(shape), dxh_g = gpu_->Alloc(shape);
      Tensor dg_c = cpu_->Alloc(gshape), dg_g = gpu_->Alloc(gshape);
      Tensor dbt_c = cpu_->Alloc(gshape), dbt_g = gpu_->Alloc(gshape);
      cpu_->ChannelAffineBackward(dy_c, xh_c, g_c, &dxh_c, &dg_c, &dbt_c);
      gpu_->ChannelAffineBackward(dy_g, xh_g, g_g, &dxh_g, &dg_g, &dbt_g);
      Expect(dxh_c, dxh_g, 1e-6, "affine dxhat");
      Expect(dg_c, dg_g, 1e-5, "affine dgamma");
      Expect(dbt_c, dbt_g, 1e-5, "affine dbeta");
      Tensor dx_c = cpu_->Alloc(shape), dx_g = gpu_->Alloc(shape);
      cpu_->BatchNormBackward(dxh_c, xh_c, s_c, &dx_c);
      gpu_->BatchNormBackward(dxh_g, xh_g, s_g, &dx_g);
      Expect(dx_c, dx_g, 1e-4, "BN backward");
    }
    auto [cb_c, cb_g] = Pair({c});
    cpu_->AddChannelBias(cb_c, &x_c);
    gpu_->AddChannelBias(cb_g, &x_g);
    Expect(x_c, x_g, 1e-6, "AddChannelBias");
    cpu_->ChannelBiasGrad(x_c, &cb_c);
    gpu_->ChannelBiasGrad(x_g, &cb_g);
    Expect(cb_c, cb_g, 1e-5, "ChannelBiasGrad");
  }
}

TEST_F(CudaOps, SpatialSoftmaxEmbeddingOptimizer) {
  PARAGAN_SKIP_WITHOUT_GPU();
  const Shape big{4, 6, 10, 14}, small{4, 6, 5, 7};
  auto [x_c, x_g] = Pair(big);
  auto [s_c, s_g] = Pair(small);
  Tensor ys_c = cpu_->Alloc(small), ys_g = gpu_->Alloc(small);
  Tensor yb_c = cpu_->Alloc(big), yb_g = gpu_->Alloc(big);
  cpu_->Upsample2xForward(s_c, &yb_c);
  gpu_->Upsample2xForward(s_g, &yb_g);
  Expect(yb_c, yb_g, 0, "Upsample fwd");
  cpu_->Upsample2xBackward(x_c, &ys_c);
  gpu_->Upsample2xBackward(x_g, &ys_g);
  Expect(ys_c, ys_g, 1e-6, "Upsample bwd");
  cpu_->AvgPool2xForward(x_c, &ys_c);
  gpu_->AvgPool2xForward(x_g, &ys_g);
  Expect(ys_c, ys_g, 1e-6, "AvgPool fwd");
  cpu_->AvgPool2xBackward(s_c, &yb_c);
  gpu_->AvgPool2xBackward(s_g, &yb_g);
  Expect(yb_c, yb_g, 0, "AvgPool bwd");
  cpu_->MaxPool2xForward(x_c, &ys_c);
  gpu_->MaxPool2xForward(x_g, &ys_g);
  Expect(ys_c, ys_g, 0, "MaxPool fwd");
  cpu_->MaxPool2xBackward(x_c, s_c, &yb_c);
  gpu_->MaxPool2xBackward(x_g, s_g, &yb_g);
  Expect(yb_c, yb_g, 0, "MaxPool bwd");
  Tensor sum_c = cpu_->Alloc({4, 6}), sum_g = gpu_->Alloc({4, 6});
  cpu_->SpatialSumForward(x_c, &sum_c);
  gpu_->SpatialSumForward(x_g, &sum_g);
  Expect(sum_c, sum_g, 1e-5, "SpatialSum fwd");
  cpu_->SpatialSumBackward(sum_c, &yb_c);
  gpu_->SpatialSumBackward(sum_g, &yb_g);
  Expect(yb_c, yb_g, 1e-5, "SpatialSum bwd");
  // Concat / split along channels.
  auto [p_c, p_g] = Pair({4, 2, 10, 14});
  Tensor cat_c = cpu_->Alloc({4, 8, 10, 14}),
         cat_g = gpu_->Alloc({4, 8, 10, 14});
  cpu_->ConcatChannels({&x_c, &p_c}, &cat_c);
  gpu_->ConcatChannels({&x_g, &p_g}, &cat_g);
  Expect(cat_c, cat_g, 0, "Concat");
  Tensor q_c = cpu_->Alloc(big), r_c = cpu_->Alloc(p_c.shape());
  Tensor q_g = gpu_->Alloc(big), r_g = gpu_->Alloc(p_g.shape());
  cpu_->SplitChannels(cat_c, {&q_c, &r_c});
  gpu_->SplitChannels(cat_g, {&q_g, &r_g});
  Expect(q_c, q_g, 0, "Split a");
  Expect(r_c, r_g, 0, "Split b");
  // Softmax rows of several widths (attention maps are [N*HW, HW/4]).
  for (int cols : {7, 64, 256, 1500}) {
    auto [l_c, l_g] = Pair({33, cols}, 4.0f);
    Tensor sm_c = cpu_->Alloc(l_c.shape()), sm_g = gpu_->Alloc(l_g.shape());
    cpu_->SoftmaxForward(l_c, &sm_c);
    gpu_->SoftmaxForward(l_g, &sm_g);
    Expect(sm_c, sm_g, 1e-5, "Softmax fwd");
    auto [d_c, d_g] = Pair(l_c.shape());
    Tensor ds_c = cpu_->Alloc(l_c.shape()), ds_g = gpu_->Alloc(l_g.shape());
    cpu_->SoftmaxBackward(sm_c, d_c, &ds_c);
    gpu_->SoftmaxBackward(sm_g, d_g, &ds_g);
    Expect(ds_c, ds_g, 1e-5, "Softmax bwd");
  }
  // Embedding rows, with repeated ids (scatter must accumulate).
  auto [t_c, t_g] = Pair({10, 24});
  const std::vector<int> ids = {3, 0, 9, 3, 3, 7};
  Tensor e_c = cpu_->Alloc({6, 24}), e_g = gpu_->Alloc({6, 24});
  cpu_->GatherRows(t_c, ids, &e_c);
  gpu_->GatherRows(t_g, ids, &e_g);
  Expect(e_c, e_g, 0, "GatherRows");
  cpu_->ScatterAddRows(e_c, ids, &t_c);
  gpu_->ScatterAddRows(e_g, ids, &t_g);
  Expect(t_c, t_g, 1e-6, "ScatterAddRows");
  // Adam and EMA.
  auto [w_c, w_g] = Pair({1000});
  auto [g_c, g_g] = Pair({1000});
  Tensor m_c = cpu_->Zeros({1000}), v_c = cpu_->Zeros({1000});
  Tensor m_g = gpu_->Zeros({1000}), v_g = gpu_->Zeros({1000});
  for (int step = 1; step <= 3; ++step) {
    cpu_->AdamUpdate(2e-4f, 0.5f, 0.999f, 1e-8f, step, g_c, &w_c, &m_c, &v_c);
    gpu_->AdamUpdate(2e-4f, 0.5f, 0.999f, 1e-8f, step, g_g, &w_g, &m_g, &v_g);
  }
  Expect(w_c, w_g, 1e-6, "Adam param");
  Expect(v_c, v_g, 1e-5, "Adam v");
  auto [ema_c, ema_g] = Pair({1000});
  cpu_->EmaUpdate(0.99f, w_c, &ema_c);
  gpu_->EmaUpdate(0.99f, w_g, &ema_g);
  Expect(ema_c, ema_g, 1e-6, "EMA");
}

// General pooling and the bilinear resize (InceptionV3's forward ops).
TEST_F(CudaOps, Pool2dAndResize) {
  PARAGAN_SKIP_WITHOUT_GPU();
  struct Win {
    int h, w, k, s, p;
  };
  for (const Win& v : std::vector<Win>{{35, 35, 3, 1, 1},
                                       {17, 17, 3, 1, 1},
                                       {8, 8, 3, 1, 1},
                                       {147, 147, 3, 2, 0},
                                       {10, 7, 3, 2, 1},
                                       {5, 9, 4, 3, 2}})
    for (PoolMode mode :
         {PoolMode::kMax, PoolMode::kAvgInclude, PoolMode::kAvgExclude}) {
      PoolGeometry g;
      g.n = 3;
      g.channels = 5;
      g.in_h = v.h;
      g.in_w = v.w;
      g.kernel = v.k;
      g.stride = v.s;
      g.padding = v.p;
      g.mode = mode;
      auto [x_c, x_g] = Pair({g.n, g.channels, g.in_h, g.in_w});
      const Shape out = {g.n, g.channels, g.out_h(), g.out_w()};
      Tensor y_c = cpu_->Alloc(out), y_g = gpu_->Alloc(out);
      cpu_->Pool2dForward(g, x_c, &y_c);
      gpu_->Pool2dForward(g, x_g, &y_g);
      Expect(y_c, y_g, mode == PoolMode::kMax ? 0 : 1e-6,
             "Pool2d " + std::to_string(v.h) + "x" + std::to_string(v.w) +
                 " k" + std::to_string(v.k) + " s" + std::to_string(v.s) +
                 " p" + std::to_string(v.p) + " mode " +
                 std::to_string(static_cast<int>(mode)));
    }
  struct Sizes {
    int h, w, ho, wo;
  };
  for (const Sizes& v : std::vector<Sizes>{{32, 32, 299, 299},
                                           {64, 48, 299, 299},
                                           {512, 300, 299, 299},
                                           {1, 1, 4, 3},
                                           {9, 9, 9, 9}}) {
    auto [x_c, x_g] = Pair({2, 3, v.h, v.w});
    Tensor y_c = cpu_->Alloc({2, 3, v.ho, v.wo}),
           y_g = gpu_->Alloc({2, 3, v.ho, v.wo});
    cpu_->ResizeBilinearForward(x_c, &y_c);
    gpu_->ResizeBilinearForward(x_g, &y_g);
    // FMA contraction on the GPU rounds differently; same taps.
    Expect(y_c, y_g, 1e-6,
           "ResizeBilinear " + std::to_string(v.h) + "x" + std::to_string(v.w) +
               " -> " + std::to_string(v.ho) + "x" + std::to_string(v.wo));
  }
}

TEST_F(CudaOps, DeviceScalarSteps) {
  PARAGAN_SKIP_WITHOUT_GPU();
  const int rows = 24, cols = 70;
  auto [w_c, w_g] = Pair({rows, cols});
  auto [u_c, u_g] = Pair({rows});
  auto [v_c, v_g] = Pair({cols});
  cpu_->NormalizeVector(&u_c);
  gpu_->NormalizeVector(&u_g);
  Expect(u_c, u_g, 1e-6, "NormalizeVector");
  cpu_->NormalizeVector(&v_c);
  gpu_->NormalizeVector(&v_g);
  auto [wv_c, wv_g] = Pair({rows});
  Tensor s_c = cpu_->Zeros({1}), s_g = gpu_->Zeros({1});
  Tensor sn_c = cpu_->Alloc(w_c.shape()), sn_g = gpu_->Alloc(w_g.shape());
  cpu_->SpectralNormWeight(u_c, wv_c, w_c, &s_c, &sn_c);
  gpu_->SpectralNormWeight(u_g, wv_g, w_g, &s_g, &sn_g);
  Expect(s_c, s_g, 1e-6, "sigma");
  Expect(sn_c, sn_g, 1e-5, "W / sigma");
  auto [dsn_c, dsn_g] = Pair(w_c.shape());
  Tensor dw_c = cpu_->Alloc(w_c.shape()), dw_g = gpu_->Alloc(w_g.shape());
  cpu_->SpectralNormBackward(dsn_c, sn_c, u_c, v_c, s_c, &dw_c);
  gpu_->SpectralNormBackward(dsn_g, sn_g, u_g, v_g, s_g, &dw_g);
  Expect(dw_c, dw_g, 1e-5, "spectral norm backward");
  auto [a_c, a_g] = Pair({1});
  auto [x_c, x_g] = Pair({3, 50});
  auto [y_c, y_g] = Pair({3, 50});
  cpu_->AxpbyScalar(a_c, x_c, 1.0f, &y_c);
  gpu_->AxpbyScalar(a_g, x_g, 1.0f, &y_g);
  Expect(y_c, y_g, 1e-6, "AxpbyScalar beta 1");
  cpu_->AxpbyScalar(a_c, x_c, 0.0f, &y_c);
  gpu_->AxpbyScalar(a_g, x_g, 0.0f, &y_g);
  Expect(y_c, y_g, 1e-6, "AxpbyScalar beta 0");
  cpu_->DotAccumulate(x_c, y_c, &a_c);
  gpu_->DotAccumulate(x_g, y_g, &a_g);
  Expect(a_c, a_g, 1e-5, "DotAccumulate");
}

struct ConvCase {
  GpuConvLayout layout;
  GpuPrecision precision;
  double tol;
};

class CudaConv : public ::testing::TestWithParam<ConvCase> {};

TEST_P(CudaConv, AllPassesMatchCpu) {
  PARAGAN_SKIP_WITHOUT_GPU();
  auto cpu = MakeCpuBackend(2, CpuConvLayout::kCanonical);
  BackendOptions o;
  o.gpu_layout = GetParam().layout;
  o.gpu_precision = GetParam().precision;
  auto gpu_or = MakeBackend("cuda", o);
  ASSERT_TRUE(gpu_or.ok()) << gpu_or.status();
  Backend* gpu = gpu_or->get();
  Rng rng(5);
  // DCGAN/BigGAN shapes: a 1-channel input (padding to 8), 4x4 stride 2,
  // 3x3 same, 1x1 shortcuts, odd channel counts; InceptionV3's rectangular
  // 1x7 / 7x1 / 1x3 / 3x1 and its unpadded 3x3 stride 2.
  const std::vector<ConvGeometry> shapes = {
      {16, 1, 32, 32, 64, 4, 2, 1},
      {16, 64, 16, 16, 128, 4, 2, 1},
      {8, 96, 16, 16, 96, 3, 1, 1},
      {8, 48, 8, 8, 24, 1, 1, 0},
      {4, 3, 32, 32, 13, 3, 1, 1},
      {16, 256, 4, 4, 1, 4, 1, 0},
      ConvGeometry::Rect(4, 128, 17, 17, 128, 1, 7, 1, 0, 3),
      ConvGeometry::Rect(4, 160, 17, 17, 192, 7, 1, 1, 3, 0),
      ConvGeometry::Rect(2, 384, 8, 8, 384, 1, 3, 1, 0, 1),
      ConvGeometry::Rect(2, 384, 8, 8, 384, 3, 1, 1, 1, 0),
      {2, 3, 299, 299, 32, 3, 2, 0},
      {2, 288, 35, 35, 384, 3, 2, 0},
  };
  for (const ConvGeometry& g : shapes) {
    SCOPED_TRACE(testing::Message()
                 << "conv n" << g.n << " " << g.in_channels << "->"
                 << g.out_channels << " k" << g.kh() << "x" << g.kw() << " s"
                 << g.stride << " p" << g.ph() << "x" << g.pw());
    Tensor x = RandomHost({g.n, g.in_channels, g.in_h, g.in_w}, &rng);
    Tensor w =
        RandomHost({g.out_channels, g.in_channels, g.kh(), g.kw()}, &rng, 0.1f);
    Tensor b = RandomHost({g.out_channels}, &rng);
    Tensor dy = RandomHost({g.n, g.out_channels, g.out_h(), g.out_w()}, &rng);
    Tensor y_c = cpu->Alloc(dy.shape()), y_g = gpu->Alloc(dy.shape());
    cpu->ConvForward(g, x, w, &b, &y_c);
    Tensor x_g = gpu->FromHost(x), w_g = gpu->FromHost(w),
           b_g = gpu->FromHost(b), dy_g = gpu->FromHost(dy);
    // Twice: the first call autotunes, the second runs the chosen variant.
    for (int rep = 0; rep < 2; ++rep) {
      gpu->ConvForward(g, x_g, w_g, &b_g, &y_g);
      EXPECT_LE(RelError(y_c, gpu, y_g), GetParam().tol) << "forward " << rep;
    }
    Tensor dx_c = cpu->Alloc(x.shape()), dx_g = gpu->Alloc(x.shape());
    cpu->ConvBackwardData(g, dy, w, &dx_c);
    for (int rep = 0; rep < 2; ++rep) {
      gpu->ConvBackwardData(g, dy_g, w_g, &dx_g);
      EXPECT_LE(RelError(dx_c, gpu, dx_g), GetParam().tol)
          << "backward data " << rep;
    }
    Tensor dw_c = cpu->Alloc(w.shape()), dw_g = gpu->Alloc(w.shape());
    Tensor db_c = cpu->Alloc(b.shape()), db_g = gpu->Alloc(b.shape());
    cpu->ConvBackwardWeights(g, x, dy, &dw_c, &db_c);
    for (int rep = 0; rep < 2; ++rep) {
      gpu->ConvBackwardWeights(g, x_g, dy_g, &dw_g, &db_g);
      EXPECT_LE(RelError(dw_c, gpu, dw_g), GetParam().tol)
          << "backward weights " << rep;
      EXPECT_LE(RelError(db_c, gpu, db_g), 1e-5) << "bias grad " << rep;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Variants, CudaConv,
    ::testing::Values(ConvCase{GpuConvLayout::kNchw, GpuPrecision::kFp32, 2e-5},
                      ConvCase{GpuConvLayout::kNhwc, GpuPrecision::kFp32, 2e-5},
                      ConvCase{GpuConvLayout::kNchw, GpuPrecision::kTf32, 5e-3},
                      ConvCase{GpuConvLayout::kNhwc, GpuPrecision::kTf32, 5e-3},
                      ConvCase{GpuConvLayout::kNhwc, GpuPrecision::kBf16, 2e-2},
                      ConvCase{GpuConvLayout::kAuto, GpuPrecision::kAuto,
                               2e-2}));

TEST(CudaLayout, ChannelsLastRoundTripIsExact) {
  PARAGAN_SKIP_WITHOUT_GPU();
  Rng rng(9);
  const int64_t n = 5, c = 13, cp = 16, h = 7, w = 9;
  Tensor x = RandomHost({n, c, h, w}, &rng);
  float *dx = nullptr, *back = nullptr;
  void* cl = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&dx), x.numel() * 4),
            cudaSuccess);
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&back), x.numel() * 4),
            cudaSuccess);
  ASSERT_EQ(cudaMalloc(&cl, (n + 3) * h * w * cp * 4), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(dx, x.data(), x.numel() * 4, cudaMemcpyHostToDevice),
            cudaSuccess);
  // float32: bit-exact both ways, padding zero.
  cuda::ToChannelsLast(nullptr, n, n + 3, c, cp, h, w, dx,
                       cuda::ElementType::kFloat32, cl);
  cuda::FromChannelsLast(nullptr, n, c, cp, h, w, cl,
                         cuda::ElementType::kFloat32, back);
  std::vector<float> out(x.numel()), padded((n + 3) * h * w * cp);
  ASSERT_EQ(cudaMemcpy(out.data(), back, x.numel() * 4, cudaMemcpyDeviceToHost),
            cudaSuccess);
  ASSERT_EQ(
      cudaMemcpy(padded.data(), cl, padded.size() * 4, cudaMemcpyDeviceToHost),
      cudaSuccess);
  for (int64_t i = 0; i < x.numel(); ++i) ASSERT_EQ(out[i], x.data()[i]) << i;
  for (int64_t r = 0; r < n + 3; ++r)
    for (int64_t p = 0; p < h * w; ++p)
      for (int64_t ch = 0; ch < cp; ++ch) {
        const float v = padded[(r * h * w + p) * cp + ch];
        if (r >= n || ch >= c) {
          ASSERT_EQ(v, 0.0f);
        } else {
          ASSERT_EQ(v, x.data()[(r * c + ch) * h * w + p]);
        }
      }
  // bfloat16: values already representable in bf16 come back exactly, and
  // others are rounded to nearest: half an ulp of an 8-bit significand,
  // 2^-8 of the value at most.
  Tensor xb = x;
  for (int64_t i = 0; i < x.numel(); ++i) {
    uint32_t bits;
    std::memcpy(&bits, &x.data()[i], 4);
    bits &= 0xffff0000u;
    float v;
    std::memcpy(&v, &bits, 4);
    xb.data()[i] = (i % 2 == 0) ? v : x.data()[i];
  }
  ASSERT_EQ(cudaMemcpy(dx, xb.data(), x.numel() * 4, cudaMemcpyHostToDevice),
            cudaSuccess);
  cuda::ToChannelsLast(nullptr, n, n, c, cp, h, w, dx,
                       cuda::ElementType::kBfloat16, cl);
  cuda::FromChannelsLast(nullptr, n, c, cp, h, w, cl,
                         cuda::ElementType::kBfloat16, back);
  ASSERT_EQ(cudaMemcpy(out.data(), back, x.numel() * 4, cudaMemcpyDeviceToHost),
            cudaSuccess);
  for (int64_t i = 0; i < x.numel(); ++i) {
    if (i % 2 == 0) {
      ASSERT_EQ(out[i], xb.data()[i]) << i;
    } else {
      ASSERT_LE(std::fabs(out[i] - xb.data()[i]),
                std::fabs(xb.data()[i]) * (1.0f / 256))
          << i;
    }
  }
  cudaFree(dx);
  cudaFree(back);
  cudaFree(cl);
}

TEST(CudaBackendOptions, NoGpuGivesClearError) {
  if (HaveGpu()) GTEST_SKIP() << "a GPU is present";
  auto b = MakeBackend("cuda", BackendOptions());
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(std::string(b.status().message()).find("no usable GPU"),
            std::string::npos)
      << b.status();
}

TEST(CudaBackendOptions, RejectsBf16OnCanonicalLayout) {
  PARAGAN_SKIP_WITHOUT_GPU();
  BackendOptions o;
  o.gpu_layout = GpuConvLayout::kNchw;
  o.gpu_precision = GpuPrecision::kBf16;
  auto b = MakeBackend("cuda", o);
  EXPECT_FALSE(b.ok());
  EXPECT_NE(std::string(b.status().message()).find("channels-last"),
            std::string::npos);
}

}  // namespace
}  // namespace paragan

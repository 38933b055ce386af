// Finite-difference gradient checks for every layer and loss.
//
// Float32 engine, so tolerances: with step h = 1e-2 the central difference has
// truncation error O(h^2 * f''') ~ 1e-4 for these smooth maps, and rounding
// error ~ 1e-7 * |L| / h ~ 1e-4 for |L| ~ 10, hence |num - ana| <= 2e-3 +
// 2e-2 * |ana|. Points within h of a kink (ReLU at 0, hinge margin, max-pool
// ties) are skipped: the derivative is not defined there.

#include "worker/engine/layers.h"

#include <cmath>
#include <functional>
#include <memory>

#include "common/rng.h"
#include "gtest/gtest.h"
#include "worker/engine/losses.h"

namespace paragan {
namespace {

constexpr double kStep = 1e-2;

class GradCheck : public ::testing::Test {
 protected:
  GradCheck() : backend_(MakeCpuBackend(2)), store_(backend_.get()), rng_(7) {}

  Tensor Random(const Shape& shape, float scale = 1.0f) {
    Tensor t = Tensor::Host(shape);
    for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = scale * rng_.Normal();
    return t;
  }
  void Randomize(float scale = 0.3f) {
    for (Param& p : store_.params()) {
      Tensor r = Random(p.value.shape(), scale);
      backend_->Copy(r, &p.value);
    }
  }

  // forward() must be a pure function of the perturbed tensors. backward(r)
  // returns dL/dx for the tensors in `inputs` (same order), where
  // L = sum(forward() * r). Parameter grads are read from the store.
  void Check(
      const std::function<Tensor()>& forward,
      const std::function<std::vector<Tensor>(const Tensor&)>& backward,
      std::vector<Tensor> inputs,
      const std::function<bool(const std::string&, int64_t)>& skip = nullptr,
      double step = kStep) {
    Tensor y = forward();
    Tensor r = Random(y.shape());
    store_.ZeroGrads();
    std::vector<Tensor> dinputs = backward(r);
    ASSERT_EQ(dinputs.size(), inputs.size());
    auto loss = [&]() {
      Tensor out = forward();
      double s = 0;
      for (int64_t i = 0; i < out.numel(); ++i)
        s += double{out.data()[i]} * r.data()[i];
      return s;
    };
    struct Target {
      std::string name;
      Tensor value, grad;
    };
    std::vector<Target> targets;
    for (size_t i = 0; i < inputs.size(); ++i)
      targets.push_back({"input" + std::to_string(i), inputs[i], dinputs[i]});
    for (Param& p : store_.params())
      targets.push_back({p.name, p.value, p.grad});
    int checked = 0;
    for (Target& t : targets) {
      const int64_t n = t.value.numel();
      const int samples = static_cast<int>(std::min<int64_t>(n, 24));
      for (int s = 0; s < samples; ++s) {
        const int64_t i = n <= 24 ? s : rng_.Below(static_cast<uint32_t>(n));
        if (skip && skip(t.name, i)) continue;
        float* p = t.value.data() + i;
        const float orig = *p;
        *p = orig + step;
        const double lp = loss();
        *p = orig - step;
        const double lm = loss();
        *p = orig;
        const double numeric = (lp - lm) / (2 * step);
        const double analytic = t.grad.data()[i];
        EXPECT_NEAR(numeric, analytic, 2e-3 + 2e-2 * std::abs(analytic))
            << t.name << "[" << i << "]";
        ++checked;
      }
    }
    EXPECT_GT(checked, 0);
  }

  std::unique_ptr<Backend> backend_;
  ParamStore store_;
  Rng rng_;
  Mode mode_{true, false, true};
};

TEST_F(GradCheck, Linear) {
  Linear layer(&store_, "fc", 7, 5, true, false);
  Randomize();
  Tensor x = Random({4, 7});
  Check(
      [&] { return layer.Forward(x, mode_); },
      [&](const Tensor& dy) { return std::vector<Tensor>{layer.Backward(dy)}; },
      {x});
}

TEST_F(GradCheck, SpectralNormLinear) {
  Linear layer(&store_, "fc", 6, 5, true, true);
  Randomize();
  Tensor x = Random({3, 6});
  layer.Forward(x, {true, true, true});  // initializes u, v
  layer.Forward(x, {true, true, true});
  Check(
      [&] { return layer.Forward(x, mode_); },
      [&](const Tensor& dy) { return std::vector<Tensor>{layer.Backward(dy)}; },
      {x});
}

TEST_F(GradCheck, Conv2dStridedPadded) {
  Conv2d layer(&store_, "conv", 3, 4, 4, 2, 1, true, false);
  Randomize();
  Tensor x = Random({2, 3, 8, 8});
  Check(
      [&] { return layer.Forward(x, mode_); },
      [&](const Tensor& dy) { return std::vector<Tensor>{layer.Backward(dy)}; },
      {x});
}

TEST_F(GradCheck, Conv2dSpectralNorm3x3) {
  Conv2d layer(&store_, "conv", 2, 3, 3, 1, 1, true, true);
  Randomize();
  Tensor x = Random({2, 2, 5, 5});
  layer.Forward(x, {true, true, true});
  layer.Forward(x, {true, true, true});
  Check(
      [&] { return layer.Forward(x, mode_); },
      [&](const Tensor& dy) { return std::vector<Tensor>{layer.Backward(dy)}; },
      {x});
}

TEST_F(GradCheck, ConvTranspose2d) {
  ConvTranspose2d layer(&store_, "deconv", 3, 2, 4, 2, 1, true);
  Randomize();
  Tensor x = Random({2, 3, 4, 4});
  Tensor y = layer.Forward(x, mode_);
  EXPECT_EQ(y.shape(), (Shape{2, 2, 8, 8}));
  Check(
      [&] { return layer.Forward(x, mode_); },
      [&](const Tensor& dy) { return std::vector<Tensor>{layer.Backward(dy)}; },
      {x});
}

TEST_F(GradCheck, BatchNormTraining) {
  BatchNorm layer(&store_, "bn", 3, true);
  Randomize();
  Tensor x = Random({4, 3, 3, 3});
  Check(
      [&] { return layer.Forward(x, mode_); },
      [&](const Tensor& dy) { return std::vector<Tensor>{layer.Backward(dy)}; },
      {x});
}

TEST_F(GradCheck, BatchNormEval) {
  BatchNorm layer(&store_, "bn", 3, true);
  Randomize();
  Tensor x = Random({4, 3, 2, 2});
  layer.Forward(Random({4, 3, 2, 2}), mode_);  // non-trivial running stats
  const Mode eval{false, false, true};
  Check(
      [&] { return layer.Forward(x, eval); },
      [&](const Tensor& dy) { return std::vector<Tensor>{layer.Backward(dy)}; },
      {x});
}

TEST_F(GradCheck, BatchNorm1d) {
  BatchNorm layer(&store_, "bn", 5, true);
  Randomize();
  Tensor x = Random({6, 5});
  Check(
      [&] { return layer.Forward(x, mode_); },
      [&](const Tensor& dy) { return std::vector<Tensor>{layer.Backward(dy)}; },
      {x});
}

TEST_F(GradCheck, ConditionalBatchNorm) {
  ConditionalBatchNorm layer(&store_, "cbn", 3, 4, true);
  Randomize();
  Tensor x = Random({4, 3, 2, 2});
  Tensor cond = Random({4, 4});
  layer.Forward(x, cond, {true, true, true});
  Check([&] { return layer.Forward(x, cond, mode_); },
        [&](const Tensor& dy) {
          Tensor dcond = backend_->Zeros(cond.shape());
          Tensor dx = layer.Backward(dy, &dcond);
          return std::vector<Tensor>{dx, dcond};
        },
        {x, cond});
}

class ActivationCheck : public GradCheck,
                        public ::testing::WithParamInterface<Activation> {};

TEST_P(ActivationCheck, Elementwise) {
  ActivationLayer layer(backend_.get(), GetParam(), 0.2f);
  Tensor x = Random({3, 4, 2, 2});
  Check(
      [&] { return layer.Forward(x); },
      [&](const Tensor& dy) { return std::vector<Tensor>{layer.Backward(dy)}; },
      {x},
      [&](const std::string&, int64_t i) {
        return std::abs(x.data()[i]) < 2 * kStep;  // the kink at 0
      });
}

INSTANTIATE_TEST_SUITE_P(All, ActivationCheck,
                         ::testing::Values(Activation::kRelu,
                                           Activation::kLeakyRelu,
                                           Activation::kTanh));

TEST_F(GradCheck, UpsampleAvgPoolSpatialSum) {
  Upsample2x up(backend_.get());
  AvgPool2x pool1(backend_.get()), pool2(backend_.get());
  SpatialSum sum(backend_.get());
  Tensor x = Random({2, 3, 4, 4});
  Check(
      [&] { return sum.Forward(pool2.Forward(pool1.Forward(up.Forward(x)))); },
      [&](const Tensor& dy) {
        return std::vector<Tensor>{
            up.Backward(pool1.Backward(pool2.Backward(sum.Backward(dy))))};
      },
      {x});
}

TEST_F(GradCheck, MaxPool) {
  MaxPool2x pool(backend_.get());
  Tensor x = Random({2, 2, 4, 4});
  Check(
      [&] { return pool.Forward(x); },
      [&](const Tensor& dy) { return std::vector<Tensor>{pool.Backward(dy)}; },
      {x},
      [&](const std::string&, int64_t i) {
        // Skip elements whose 2x2 window has a near tie with the max.
        const int64_t w = 4, plane = i / 16, r = (i % 16) / w, c = i % w;
        const float* base = x.data() + plane * 16 + (r / 2 * 2) * w + c / 2 * 2;
        float v[4] = {base[0], base[1], base[w], base[w + 1]};
        std::sort(v, v + 4);
        return v[3] - v[2] < 3 * kStep;
      });
}

TEST_F(GradCheck, EmbeddingWithSpectralNorm) {
  Embedding emb(&store_, "embed", 5, 4, true);
  Randomize();
  const std::vector<int> ids = {0, 3, 3, 1};
  emb.Forward(ids, {true, true, true});
  Check([&] { return emb.Forward(ids, mode_); },
        [&](const Tensor& dy) {
          emb.Backward(dy);
          return std::vector<Tensor>{};
        },
        {});
}

TEST_F(GradCheck, SelfAttention) {
  SelfAttention attn(&store_, "attn", 16, true);
  Randomize(0.3f);
  store_.FindParam("attn.gamma")->value.data()[0] = 0.7f;
  Tensor x = Random({2, 16, 4, 4});
  attn.Forward(x, {true, true, true});
  // A smaller step: the 2x2 max-pools inside switch their argmax when a
  // perturbation closes a near tie, which a 1e-2 step does for a few weights.
  Check(
      [&] { return attn.Forward(x, mode_); },
      [&](const Tensor& dy) { return std::vector<Tensor>{attn.Backward(dy)}; },
      {x}, nullptr, 1e-3);
}

TEST(LossGrad, AllLossesMatchFiniteDifferences) {
  const std::vector<float> real = {0.3f, -1.7f, 2.2f, 0.9f};
  const std::vector<float> fake = {-0.4f, 1.3f, -2.5f};
  for (GanLoss loss : {GanLoss::kHinge, GanLoss::kNonSaturating}) {
    std::vector<float> dr, df, dg, tmp1, tmp2;
    DiscriminatorLoss(loss, real, fake, &dr, &df);
    GeneratorLoss(loss, fake, &dg);
    const double h = 1e-3;
    for (size_t i = 0; i < real.size(); ++i) {
      auto r2 = real;
      r2[i] += h;
      const double lp = DiscriminatorLoss(loss, r2, fake, &tmp1, &tmp2);
      r2[i] -= 2 * h;
      const double lm = DiscriminatorLoss(loss, r2, fake, &tmp1, &tmp2);
      EXPECT_NEAR((lp - lm) / (2 * h), dr[i], 1e-4);
    }
    for (size_t i = 0; i < fake.size(); ++i) {
      auto f2 = fake;
      f2[i] += h;
      const double lp = DiscriminatorLoss(loss, real, f2, &tmp1, &tmp2);
      const double gp = GeneratorLoss(loss, f2, &tmp1);
      f2[i] -= 2 * h;
      const double lm = DiscriminatorLoss(loss, real, f2, &tmp1, &tmp2);
      const double gm = GeneratorLoss(loss, f2, &tmp1);
      EXPECT_NEAR((lp - lm) / (2 * h), df[i], 1e-4);
      EXPECT_NEAR((gp - gm) / (2 * h), dg[i], 1e-4);
    }
  }
  EXPECT_FALSE(ParseGanLoss("wasserstein").ok());
}

}  // namespace
}  // namespace paragan

// DCGAN-32 forward, backward and one full training step against PyTorch.
// tests/fixtures/dcgan32_parity.pgt comes from
// tests/pytorch/make_dcgan_fixture.py (PyTorch 1.13, float32, one thread) with
// weights from a closed-form formula that both sides evaluate, so the fixture
// stays small.

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "common/tensor_io.h"
#include "gtest/gtest.h"
#include "worker/train/gan_trainer.h"

namespace paragan {
namespace {

std::vector<float> FixtureUniform(int k, int64_t n, double scale,
                                  double shift) {
  std::vector<float> out(n);
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t h = (static_cast<uint64_t>(i) * 2654435761ULL +
                        static_cast<uint64_t>(k + 1) * 97531ULL) %
                       4294967296ULL;
    out[i] = static_cast<float>(shift + scale * (h / 4294967296.0 * 2 - 1));
  }
  return out;
}

class DcganParity : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* src = std::getenv("TEST_SRCDIR");
    const std::string path = std::string(src ? src : ".") +
                             "/paragan/tests/fixtures/dcgan32_parity.pgt";
    auto arrays = ReadTensorFile(path);
    ASSERT_TRUE(arrays.ok()) << arrays.status();
    for (const NamedArray& a : *arrays) {
      auto v = ToFloatVector(a);
      ASSERT_TRUE(v.ok()) << a.name;
      fixture_[a.name] = {a.dims, *v};
    }
    backend_ = MakeCpuBackend(1);
    TrainerConfig config = DefaultTrainerConfig("dcgan32");
    config.batch_size = 8;
    auto t = GanTrainer::Create(config, backend_.get());
    ASSERT_TRUE(t.ok()) << t.status();
    trainer_ = std::move(*t);
    SetWeights();
  }

  const std::vector<float>& F(const std::string& name) {
    auto it = fixture_.find(name);
    EXPECT_NE(it, fixture_.end()) << "fixture lacks " << name;
    static const std::vector<float> kEmpty;
    return it == fixture_.end() ? kEmpty : it->second.second;
  }

  void SetWeights() {
    int k = 0;
    for (ParamStore* s :
         {&trainer_->model().generator(), &trainer_->model().discriminator()}) {
      for (Param& p : s->params()) {
        const Shape& shape = p.value.shape();
        std::vector<float> v;
        if (shape.size() == 1) {
          const bool bn_weight = p.name.find(".bn") != std::string::npos &&
                                 p.name.find(".weight") != std::string::npos;
          v = FixtureUniform(k, p.value.numel(), 0.1, bn_weight ? 1.0 : 0.0);
        } else {
          // numel / dim 0 is PyTorch's fan_in for conv and linear weights,
          // and for transposed-conv weights [in, out, k, k] too (out * k * k).
          const int64_t fan_in = p.value.numel() / shape[0];
          v = FixtureUniform(k, p.value.numel(),
                             1.0 / std::sqrt(double(fan_in)), 0.0);
        }
        std::memcpy(p.value.data(), v.data(), v.size() * sizeof(float));
        ++k;
      }
    }
    for (auto& [name, t] : trainer_->model().discriminator().buffers()) {
      const std::vector<float>& v = F("init." + name);
      ASSERT_EQ(static_cast<int64_t>(v.size()), t->numel()) << name;
      std::memcpy(t->data(), v.data(), v.size() * sizeof(float));
    }
  }

  static void ExpectClose(const std::vector<float>& ours,
                          const std::vector<float>& ref, double rtol,
                          double atol_fraction_of_max,
                          const std::string& what) {
    ASSERT_EQ(ours.size(), ref.size()) << what;
    double max_ref = 0;
    for (float r : ref) max_ref = std::max(max_ref, double(std::abs(r)));
    const double atol = atol_fraction_of_max * max_ref + 1e-30;
    int bad = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
      if (std::abs(ours[i] - ref[i]) > atol + rtol * std::abs(ref[i])) {
        if (++bad <= 3)
          ADD_FAILURE() << what << "[" << i << "]: ours " << ours[i] << " ref "
                        << ref[i];
      }
    }
    EXPECT_EQ(bad, 0) << what;
  }

  static std::vector<float> Sampled(const Tensor& t) {
    const int64_t m = t.numel(), s = std::min<int64_t>(m, 1024);
    std::vector<float> out(s);
    for (int64_t j = 0; j < s; ++j) out[j] = t.data()[(j * m) / s];
    return out;
  }

  std::map<std::string, std::pair<Shape, std::vector<float>>> fixture_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<GanTrainer> trainer_;
};

TEST_F(DcganParity, ForwardBackwardAndOneTrainingStepMatchPyTorch) {
  GanModel& model = trainer_->model();
  // Forward passes on the fixture inputs.
  Tensor z_d = Tensor::HostFrom({8, 128}, F("in.z_d"));
  Tensor z_g = Tensor::HostFrom({8, 128}, F("in.z_g"));
  Tensor real = Tensor::HostFrom({8, 1, 32, 32}, F("in.real"));

  // The trainer draws z_d for its D step and z_g for its G step.
  int draws = 0;
  trainer_->SetNoiseSourceForTesting([&](int n) {
    EXPECT_EQ(n, 8);
    return ++draws == 1 ? z_d : z_g;
  });
  // The forward outputs before the step, on a copy of the model (the
  // forwards change BN statistics and spectral-norm vectors).
  {
    TrainerConfig config = DefaultTrainerConfig("dcgan32");
    config.batch_size = 8;
    auto probe_or = GanTrainer::Create(config, backend_.get());
    ASSERT_TRUE(probe_or.ok());
    GanModel& probe = (*probe_or)->model();
    for (ParamStore* dst : {&probe.generator(), &probe.discriminator()}) {
      ParamStore& src =
          dst == &probe.generator() ? model.generator() : model.discriminator();
      for (Param& p : dst->params())
        backend_->Copy(src.FindParam(p.name)->value, &p.value);
      for (auto& [name, t] : dst->buffers())
        backend_->Copy(*src.FindBuffer(name), t);
    }
    Tensor fake = probe.Generate(z_d, {}, {true, false, false});
    ExpectClose(fake.ToVector(), F("out.fake_d"), 1e-4, 1e-5, "G(z_d)");
    Tensor both = Tensor::Host({16, 1, 32, 32});
    std::memcpy(both.data(), real.data(), real.numel() * sizeof(float));
    std::memcpy(both.data() + real.numel(), fake.data(),
                fake.numel() * sizeof(float));
    Tensor logits =
        probe.Discriminate(both, std::vector<int>(16, 0), {true, true, true});
    ExpectClose(logits.ToVector(), F("out.d_logits"), 1e-4, 1e-4, "D logits");
  }

  StepStats stats =
      trainer_->Step([&](Tensor* images, std::vector<int>* labels) {
        *images = real;
        labels->assign(8, 0);
      });
  EXPECT_EQ(draws, 2);
  EXPECT_NEAR(stats.d_loss, F("out.d_loss")[0],
              1e-4 * std::abs(F("out.d_loss")[0]) + 1e-5);
  // Through the stepped D (see the tolerances below).
  EXPECT_NEAR(stats.g_loss, F("out.g_loss")[0],
              3e-2 * std::abs(F("out.g_loss")[0]) + 1e-4);

  // Tolerances. The D step is a deterministic function of the fixture, so
  // D's gradients agree to float32 summation-order noise (2e-3 relative).
  // The G step runs through D *after* its first Adam step, which moves every
  // weight by lr * sign(grad): where a D gradient is ~0 its sign is rounding
  // noise, so the two D's differ by up to 2 * lr = 4e-4 in a few weights (~1%
  // of their scale), and G's gradients inherit about that: 3e-2 relative.
  // Biases that feed a BatchNorm have a gradient of exactly 0 in real numbers;
  // both sides report rounding noise there, checked against an absolute bound.
  for (ParamStore* s : {&model.generator(), &model.discriminator()}) {
    const bool g_step = s == &model.generator();
    const double rtol = g_step ? 3e-2 : 2e-3, atol_frac = g_step ? 1e-2 : 2e-4;
    for (Param& p : s->params()) {
      const std::vector<float> grad = Sampled(p.grad);
      const double ref_l2 = F("l2.grad." + p.name)[0];
      const double rms = ref_l2 / std::sqrt(double(p.grad.numel()));
      if (p.name == "g.deconv1.bias" || p.name == "g.deconv2.bias") {
        for (float g : grad) EXPECT_LT(std::abs(g), 1e-6) << p.name;
        EXPECT_LT(rms, 1e-6) << p.name;
        continue;
      }
      ExpectClose(grad, F("grad." + p.name), rtol, atol_frac, "grad " + p.name);
      double sum = 0;
      for (int64_t i = 0; i < p.grad.numel(); ++i) sum += p.grad.data()[i];
      EXPECT_NEAR(sum, F("sum.grad." + p.name)[0],
                  rtol * ref_l2 * std::sqrt(double(p.grad.numel())) + 1e-6)
          << "sum of grad " << p.name;
      // After one Adam step each weight moved by about lr * sign(grad); skip
      // the weights whose gradient is too small for its sign to be reliable.
      const std::vector<float> after = Sampled(p.value);
      const std::vector<float>& ref_after = F("after." + p.name);
      const std::vector<float>& ref_grad = F("grad." + p.name);
      int bad = 0, checked = 0;
      for (size_t i = 0; i < after.size(); ++i) {
        if (std::abs(ref_grad[i]) < (g_step ? 0.1 : 1e-3) * rms) continue;
        ++checked;
        if (std::abs(after[i] - ref_after[i]) >
            2e-6 + 1e-5 * std::abs(ref_after[i]))
          ++bad;
      }
      EXPECT_EQ(bad, 0) << "weights after the Adam step differ: " << p.name;
      EXPECT_GT(checked, 0) << p.name;
    }
    for (auto& [name, t] : s->buffers())
      ExpectClose(t->ToVector(), F("after." + name), 1e-3, 1e-5,
                  "buffer " + name);
  }
}

}  // namespace
}  // namespace paragan

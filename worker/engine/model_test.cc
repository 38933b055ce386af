// End-to-end finite-difference gradient checks of whole models (G and D of
// DCGAN-32 and BigGAN-32), in the style of layers_test.cc: L = sum(y * r) for
// a random r, central differences, |num - ana| <= 2e-3 + 2e-2 * |ana|, a few
// sampled elements per parameter tensor. Plus MakeModel's argument checks.

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/rng.h"
#include "gtest/gtest.h"
#include "worker/engine/model.h"

namespace paragan {
namespace {

constexpr double kStep = 1e-2;
// The 2x2 max-pools inside self-attention switch their argmax when a
// perturbation closes a near tie; a smaller step keeps that rare.
constexpr double kAttentionStep = 1e-3;
constexpr int kSamplesPerTensor = 10;

// Training-mode forward with fixed spectral-norm vectors and parameter grads.
constexpr Mode kCheckMode{true, false, true};
// The warm-up pass that runs the power iteration once.
constexpr Mode kWarmUpMode{true, true, false};

class ModelGradCheck : public ::testing::Test {
 protected:
  ModelGradCheck() : backend_(MakeCpuBackend(2)), rng_(11) {}

  std::unique_ptr<GanModel> Make(const ModelConfig& config) {
    auto model = MakeModel(config, backend_.get());
    EXPECT_TRUE(model.ok()) << model.status();
    if (!model.ok()) return nullptr;
    (*model)->Initialize(/*seed=*/3);
    return std::move(model).value();
  }

  Tensor Random(const Shape& shape, float scale = 1.0f) {
    Tensor t = Tensor::Host(shape);
    for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = scale * rng_.Normal();
    return backend_->FromHost(t);
  }

  // Initialization leaves the attention output scale at 0, which would make
  // every attention gradient trivially 0; give it a real value.
  static void SetAttentionGamma(ParamStore* store, const std::string& name) {
    Param* gamma = store->FindParam(name);
    ASSERT_NE(gamma, nullptr) << name;
    gamma->value.data()[0] = 0.5f;
  }

  // Compares dL/dtensor from `backward` against central differences of
  // L = sum(forward() * r), for every parameter of `store` and for `inputs`
  // (whose analytic gradients `backward` returns, in order). `step_for`
  // picks the finite-difference step of each tensor.
  void Check(const std::function<Tensor()>& forward,
             const std::function<std::vector<Tensor>(const Tensor&)>& backward,
             ParamStore* store, const std::vector<Tensor>& inputs,
             const std::function<double(const std::string&)>& step_for) {
    Tensor y = backend_->ToHost(forward());
    Tensor r = Tensor::Host(y.shape());
    for (int64_t i = 0; i < r.numel(); ++i) r.data()[i] = rng_.Normal();
    store->ZeroGrads();
    std::vector<Tensor> dinputs = backward(backend_->FromHost(r));
    ASSERT_EQ(dinputs.size(), inputs.size());
    auto loss = [&]() {
      Tensor out = backend_->ToHost(forward());
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
    for (Param& p : store->params())
      targets.push_back({p.name, p.value, p.grad});
    int checked = 0, nonzero = 0;
    for (Target& t : targets) {
      const Tensor grad = backend_->ToHost(t.grad);
      const double step = step_for(t.name);
      const int64_t n = t.value.numel();
      const int samples =
          static_cast<int>(std::min<int64_t>(n, kSamplesPerTensor));
      for (int s = 0; s < samples; ++s) {
        const int64_t i = n <= kSamplesPerTensor
                              ? s
                              : rng_.Below(static_cast<uint32_t>(n));
        // CPU tensors are host memory: perturb in place.
        float* p = t.value.data() + i;
        const float orig = *p;
        *p = static_cast<float>(orig + step);
        const double lp = loss();
        *p = static_cast<float>(orig - step);
        const double lm = loss();
        *p = orig;
        const double numeric = (lp - lm) / (2 * step);
        const double analytic = grad.data()[i];
        EXPECT_NEAR(numeric, analytic, 2e-3 + 2e-2 * std::abs(analytic))
            << t.name << "[" << i << "] of " << ShapeToString(t.value.shape());
        ++checked;
        if (std::abs(analytic) > 1e-3) ++nonzero;
      }
    }
    EXPECT_GT(checked, 0);
    // Guards against a vacuous check (all gradients zero).
    EXPECT_GT(nonzero, checked / 4) << nonzero << " of " << checked;
  }

  void CheckGenerator(GanModel* model, int batch,
                      const std::vector<int>& labels,
                      const std::function<double(const std::string&)>& step) {
    const Tensor z = Random({batch, model->config().z_dim});
    model->Generate(z, labels, kWarmUpMode);
    Check([&] { return model->Generate(z, labels, kCheckMode); },
          [&](const Tensor& dy) {
            model->GenerateBackward(dy);
            return std::vector<Tensor>{};
          },
          &model->generator(), {}, step);
  }

  void CheckDiscriminator(
      GanModel* model, int batch, const std::vector<int>& labels,
      const std::function<double(const std::string&)>& step) {
    const ModelConfig& c = model->config();
    const Tensor x =
        Random({batch, c.image_channels, c.resolution, c.resolution}, 0.5f);
    model->Discriminate(x, labels, kWarmUpMode);
    Check([&] { return model->Discriminate(x, labels, kCheckMode); },
          [&](const Tensor& dy) {
            return std::vector<Tensor>{model->DiscriminateBackward(dy)};
          },
          &model->discriminator(), {x}, step);
  }

  std::unique_ptr<Backend> backend_;
  Rng rng_;
};

double UniformStep(const std::string&) { return kStep; }

// Attention weights get the smaller step, and so does every tensor upstream
// of the attention's max-pools when `attention` is on.
std::function<double(const std::string&)> BigGanStep(bool attention,
                                                     bool generator) {
  return [attention, generator](const std::string& name) {
    if (!attention) return kStep;
    if (name.find(".attn.") != std::string::npos) return kAttentionStep;
    if (generator) {
      // Upstream of G's attention (after block 1): the input linear, the
      // shared embedding and blocks 0 and 1.
      for (const char* p :
           {"g.linear.", "g.shared.", "g.block0.", "g.block1."})
        if (name.rfind(p, 0) == 0) return kAttentionStep;
      return kStep;
    }
    // Upstream of D's attention (after block 1): block 1 and the images.
    if (name.rfind("d.block1.", 0) == 0 || name.rfind("input", 0) == 0)
      return kAttentionStep;
    return kStep;
  };
}

ModelConfig SmallBigGan(bool attention) {
  ModelConfig c;
  c.name = "biggan32";
  c.image_channels = 3;
  c.num_classes = 4;
  c.z_dim = 16;
  c.width = 8;  // 32 channels: attention needs a multiple of 8
  c.attention = attention;
  return c;
}

class BigGanGradCheck : public ModelGradCheck,
                        public ::testing::WithParamInterface<bool> {};

TEST_P(BigGanGradCheck, Generator) {
  const bool attention = GetParam();
  std::unique_ptr<GanModel> model = Make(SmallBigGan(attention));
  ASSERT_NE(model, nullptr);
  if (attention) SetAttentionGamma(&model->generator(), "g.attn.gamma");
  CheckGenerator(model.get(), 3, {0, 3, 1}, BigGanStep(attention, true));
}

TEST_P(BigGanGradCheck, Discriminator) {
  const bool attention = GetParam();
  std::unique_ptr<GanModel> model = Make(SmallBigGan(attention));
  ASSERT_NE(model, nullptr);
  if (attention) SetAttentionGamma(&model->discriminator(), "d.attn.gamma");
  CheckDiscriminator(model.get(), 3, {2, 0, 2}, BigGanStep(attention, false));
}

INSTANTIATE_TEST_SUITE_P(Attention, BigGanGradCheck, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "On" : "Off";
                         });

ModelConfig Dcgan(int channels) {
  ModelConfig c;
  c.name = "dcgan32";
  c.image_channels = channels;
  c.z_dim = 32;
  return c;
}

TEST_F(ModelGradCheck, DcganGenerator) {
  std::unique_ptr<GanModel> model = Make(Dcgan(1));
  ASSERT_NE(model, nullptr);
  CheckGenerator(model.get(), 3, {0, 0, 0}, UniformStep);
}

TEST_F(ModelGradCheck, DcganDiscriminator) {
  std::unique_ptr<GanModel> model = Make(Dcgan(3));
  ASSERT_NE(model, nullptr);
  CheckDiscriminator(model.get(), 2, {0, 0}, UniformStep);
}

// The G step runs D without parameter gradients: D's grads must stay
// untouched and dimages must equal the one with parameter gradients.
TEST_F(ModelGradCheck, DiscriminatorWithoutParamGradsStillReturnsDImages) {
  for (const ModelConfig& config : {Dcgan(1), SmallBigGan(true)}) {
    std::unique_ptr<GanModel> model = Make(config);
    ASSERT_NE(model, nullptr);
    const Tensor x = Random({2, config.image_channels, 32, 32}, 0.5f);
    const Tensor dy = Random({2, 1});
    const std::vector<int> labels = {1, 0};
    model->Discriminate(x, labels, kWarmUpMode);
    model->discriminator().ZeroGrads();
    model->Discriminate(x, labels, kCheckMode);
    const std::vector<float> with =
        backend_->ToHost(model->DiscriminateBackward(dy)).ToVector();
    model->discriminator().ZeroGrads();
    model->Discriminate(x, labels, {true, false, false});
    const std::vector<float> without =
        backend_->ToHost(model->DiscriminateBackward(dy)).ToVector();
    EXPECT_EQ(with, without) << config.name;
    for (const Param& p : model->discriminator().params()) {
      const std::vector<float> g = backend_->ToHost(p.grad).ToVector();
      EXPECT_TRUE(std::all_of(g.begin(), g.end(),
                              [](float v) { return v == 0.0f; }))
          << config.name << " " << p.name;
    }
  }
}

TEST(MakeModelTest, BuildsBothModels) {
  std::unique_ptr<Backend> backend = MakeCpuBackend(1);
  ModelConfig dcgan;
  auto d = MakeModel(dcgan, backend.get());
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_FALSE((*d)->conditional());
  auto b = MakeModel(SmallBigGan(true), backend.get());
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_TRUE((*b)->conditional());
  EXPECT_NE((*b)->generator().FindParam("g.attn.gamma"), nullptr);
  auto no_attn = MakeModel(SmallBigGan(false), backend.get());
  ASSERT_TRUE(no_attn.ok()) << no_attn.status();
  EXPECT_EQ((*no_attn)->generator().FindParam("g.attn.gamma"), nullptr);
  EXPECT_EQ((*no_attn)->discriminator().FindParam("d.attn.gamma"), nullptr);
}

void ExpectRejected(const ModelConfig& config,
                    const std::vector<std::string>& needles) {
  std::unique_ptr<Backend> backend = MakeCpuBackend(1);
  auto model = MakeModel(config, backend.get());
  ASSERT_FALSE(model.ok()) << config.name;
  EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string msg(model.status().message());
  for (const std::string& needle : needles)
    EXPECT_NE(msg.find(needle), std::string::npos)
        << "'" << msg << "' lacks '" << needle << "'";
}

TEST(MakeModelTest, RejectsUnknownName) {
  ModelConfig c;
  c.name = "stylegan9";
  ExpectRejected(c, {"stylegan9"});
}

TEST(MakeModelTest, RejectsBigGanZDimNotDivisibleBy4) {
  ModelConfig c = SmallBigGan(true);
  c.z_dim = 18;
  ExpectRejected(c, {"z_dim", "18"});
}

TEST(MakeModelTest, RejectsBadChannels) {
  for (int channels : {0, 2, 4}) {
    ModelConfig c;
    c.image_channels = channels;
    ExpectRejected(c, {"image_channels", std::to_string(channels)});
  }
  ModelConfig b = SmallBigGan(false);
  b.image_channels = 2;
  ExpectRejected(b, {"image_channels", "2"});
}

TEST(MakeModelTest, RejectsResolutionOtherThan32) {
  for (const char* name : {"dcgan32", "biggan32"}) {
    ModelConfig c = SmallBigGan(true);
    c.name = name;
    c.resolution = 64;
    ExpectRejected(c, {"resolution", "64", name});
  }
}

}  // namespace
}  // namespace paragan

// End-to-end finite-difference gradient checks of whole models (G and D of
// DCGAN-32 and BigGAN-32), in the style of layers_test.cc: L = sum(y * r) for
// a random r, |num - ana| <= 2e-3 + 2e-2 * |ana| (plus the slack below), ~10
// sampled elements per parameter tensor. Plus MakeModel's argument checks.
//
// A whole model needs more care than one layer. L is only piecewise smooth:
// it has a kink wherever one of the ~1e5 ReLU / leaky-ReLU units, or a 2x2
// max-pool inside self-attention, changes branch. A single layer has few
// kinks and layers_test skips the points near them; here a 1e-2 step of one
// weight moves thousands of downstream pre-activations and some always cross
// zero, so a central difference averages the derivative over several smooth
// pieces. Measured on BigGAN G: 10-40% of the elements miss the layer
// tolerance at h = 1e-2, still ~10% at 1e-3, and the float32 rounding noise
// of L (~3e-6) rules out much smaller steps; a line scan of L through a
// missed element shows a kink, not a wrong slope. The check therefore:
//  * tries a ladder of steps, 1e-2, 3e-3, 1e-3, 3e-4 (the small ones also
//    resolve the attention max-pool near ties), and at each step the central
//    and both one-sided differences (with a kink on one side only, the
//    analytic value is the derivative of the other side); an element passes
//    as soon as one of them agrees;
//  * adds 5% of the tensor's gradient scale (RMS of its sampled analytic
//    values) to the tolerance, because the kink error scales with the
//    derivatives of the units a weight feeds, not with that coordinate's own
//    derivative (which can sit near zero among large neighbours), and 1e-4 of
//    the network's gradient scale for the rounding noise of L (it decides the
//    biases that BatchNorm makes exactly gradient-free);
//  * tolerates one missed element per tensor sampled at least 4 times and
//    at most 3% missed overall (each printed as a "note:").
// Over 46 seeds (init, inputs and sampled elements) every check passed with
// at most one note per model. A wiring bug (a missing branch, a stale cache,
// a wrong sign or scale) misses at every step for most elements of the
// tensors it touches, and fails.

#include "worker/engine/model.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/rng.h"
#include "gtest/gtest.h"

namespace paragan {
namespace {

constexpr double kSteps[] = {1e-2, 3e-3, 1e-3, 3e-4};
constexpr double kTensorScaleSlack = 0.05;
constexpr double kNetworkScaleSlack = 1e-4;
constexpr double kMaxMissedFraction = 0.03;
constexpr int kMinSamplesForMiss = 4;
constexpr int kDcganSamples = 10;
constexpr int kBigGanSamples = 10;
// One thread: bazel runs test binaries side by side on small machines, and
// OpenMP threads spinning against each other there cost far more than the
// second core gains.
constexpr int kThreads = 1;

// Training-mode forward with fixed spectral-norm vectors and parameter grads.
constexpr Mode kCheckMode{true, false, true};
// The warm-up pass that runs the power iteration once.
constexpr Mode kWarmUpMode{true, true, false};

class ModelGradCheck : public ::testing::Test {
 protected:
  ModelGradCheck() : backend_(MakeCpuBackend(kThreads)), rng_(11) {}

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

  // Compares dL/dtensor from `backward` against finite differences of
  // L = sum(forward() * r), for `samples` elements of every parameter of
  // `store` and of each of `inputs` (whose analytic gradients `backward`
  // returns, in order).
  void Check(const std::function<Tensor()>& forward,
             const std::function<std::vector<Tensor>(const Tensor&)>& backward,
             ParamStore* store, const std::vector<Tensor>& inputs,
             int samples) {
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
      Target(std::string n, Tensor v, Tensor g)
          : name(std::move(n)), value(std::move(v)), grad(std::move(g)) {}
      std::string name;
      Tensor value;
      Tensor grad;  // host copy
      std::vector<int64_t> indices;
      double scale = 0;  // RMS of the sampled analytic gradient
    };
    std::vector<Target> targets;
    for (size_t i = 0; i < inputs.size(); ++i)
      targets.emplace_back("input" + std::to_string(i), inputs[i],
                           backend_->ToHost(dinputs[i]));
    for (Param& p : store->params())
      targets.emplace_back(p.name, p.value, backend_->ToHost(p.grad));
    double network_sq = 0;
    int64_t network_count = 0;
    for (Target& t : targets) {
      const int64_t n = t.value.numel();
      double sq = 0;
      for (int s = 0; s < std::min<int64_t>(n, samples); ++s) {
        const int64_t i =
            n <= samples ? s : rng_.Below(static_cast<uint32_t>(n));
        t.indices.push_back(i);
        sq += double{t.grad.data()[i]} * t.grad.data()[i];
      }
      t.scale = std::sqrt(sq / t.indices.size());
      network_sq += sq;
      network_count += static_cast<int64_t>(t.indices.size());
    }
    const double network_scale = std::sqrt(network_sq / network_count);
    const double l0 = loss();
    int checked = 0, missed = 0, nonzero = 0;
    for (Target& t : targets) {
      int tensor_missed = 0;
      std::string misses;
      for (int64_t i : t.indices) {
        const double analytic = t.grad.data()[i];
        const double tol = 2e-3 + 2e-2 * std::abs(analytic) +
                           kTensorScaleSlack * t.scale +
                           kNetworkScaleSlack * network_scale;
        // CPU tensors are host memory: perturb in place.
        float* p = t.value.data() + i;
        const float orig = *p;
        bool passed = false, have_closest = false;
        double closest = 0;
        for (double step : kSteps) {
          *p = static_cast<float>(orig + step);
          const double lp = loss();
          const double taken = double{*p} - orig;  // after float rounding
          *p = static_cast<float>(orig - step);
          const double lm = loss();
          const double taken_back = orig - double{*p};
          *p = orig;
          // The central difference, and the one-sided ones: with a kink just
          // on one side, the analytic value is the derivative of the other.
          for (double estimate : {(lp - lm) / (taken + taken_back),
                                  (lp - l0) / taken, (l0 - lm) / taken_back}) {
            if (!have_closest ||
                std::abs(estimate - analytic) < std::abs(closest - analytic))
              closest = estimate;
            have_closest = true;
          }
          if (std::abs(closest - analytic) <= tol) {
            passed = true;
            break;
          }
        }
        ++checked;
        if (std::abs(analytic) > 1e-3) ++nonzero;
        if (passed) continue;
        ++tensor_missed;
        misses += " [" + std::to_string(i) + "] analytic " +
                  std::to_string(analytic) + " vs " + std::to_string(closest) +
                  " (tolerance " + std::to_string(tol) + ");";
      }
      missed += tensor_missed;
      // One kink-dominated element per tensor is tolerated (not for tensors
      // sampled fewer than kMinSamplesForMiss times, e.g. attention's gamma).
      const int allowed =
          static_cast<int>(t.indices.size()) >= kMinSamplesForMiss ? 1 : 0;
      EXPECT_LE(tensor_missed, allowed)
          << t.name << " " << ShapeToString(t.value.shape()) << ":" << misses;
      if (tensor_missed > 0 && tensor_missed <= allowed)
        std::printf("note: %s%s\n", t.name.c_str(), misses.c_str());
    }
    EXPECT_GT(checked, 0);
    EXPECT_LE(missed, kMaxMissedFraction * checked)
        << missed << " of " << checked << " elements missed at every step";
    // Guards against a vacuous check (all gradients zero).
    EXPECT_GT(nonzero, checked / 2) << nonzero << " of " << checked;
  }

  void CheckGenerator(GanModel* model, int batch,
                      const std::vector<int>& labels, int samples) {
    const Tensor z = Random({batch, model->config().z_dim});
    model->Generate(z, labels, kWarmUpMode);
    Check([&] { return model->Generate(z, labels, kCheckMode); },
          [&](const Tensor& dy) {
            model->GenerateBackward(dy);
            return std::vector<Tensor>{};
          },
          &model->generator(), {}, samples);
  }

  void CheckDiscriminator(GanModel* model, int batch,
                          const std::vector<int>& labels, int samples) {
    const ModelConfig& c = model->config();
    const Tensor x =
        Random({batch, c.image_channels, c.resolution, c.resolution}, 0.5f);
    model->Discriminate(x, labels, kWarmUpMode);
    Check([&] { return model->Discriminate(x, labels, kCheckMode); },
          [&](const Tensor& dy) {
            return std::vector<Tensor>{model->DiscriminateBackward(dy)};
          },
          &model->discriminator(), {x}, samples);
  }

  std::unique_ptr<Backend> backend_;
  Rng rng_;
};

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
  CheckGenerator(model.get(), 2, {0, 3}, kBigGanSamples);
}

TEST_P(BigGanGradCheck, Discriminator) {
  const bool attention = GetParam();
  std::unique_ptr<GanModel> model = Make(SmallBigGan(attention));
  ASSERT_NE(model, nullptr);
  if (attention) SetAttentionGamma(&model->discriminator(), "d.attn.gamma");
  CheckDiscriminator(model.get(), 2, {2, 1}, kBigGanSamples);
}

INSTANTIATE_TEST_SUITE_P(Attention, BigGanGradCheck, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "On" : "Off";
                         });

// The 64- and 128-pixel architectures (BigGAN-PyTorch's arch[64] and
// arch[128]: channel multipliers growing towards the bottom, attention at half
// the resolution). Width 2 keeps the finite differences cheap; attention needs
// 8 channels, so it is checked at 64 through G (4 * width) only.
ModelConfig BigGanAt(int resolution, int width, bool attention) {
  ModelConfig c = DefaultModelConfig("biggan" + std::to_string(resolution));
  c.image_channels = 3;
  c.num_classes = 4;
  c.z_dim = resolution == 64 ? 20 : 24;
  c.width = width;
  c.attention = attention;
  return c;
}

TEST_F(ModelGradCheck, BigGan64Generator) {
  std::unique_ptr<GanModel> model = Make(BigGanAt(64, 2, false));
  ASSERT_NE(model, nullptr);
  CheckGenerator(model.get(), 2, {1, 3}, kBigGanSamples);
}

TEST_F(ModelGradCheck, BigGan64Discriminator) {
  std::unique_ptr<GanModel> model = Make(BigGanAt(64, 2, false));
  ASSERT_NE(model, nullptr);
  CheckDiscriminator(model.get(), 2, {0, 2}, kBigGanSamples);
}

TEST_F(ModelGradCheck, BigGan128ShapesAndParameters) {
  for (int res : {64, 128}) {
    std::unique_ptr<GanModel> model = Make(BigGanAt(res, 8, true));
    ASSERT_NE(model, nullptr);
    const int blocks = res == 64 ? 4 : 5;
    EXPECT_NE(model->generator().FindParam(
                  "g.block" + std::to_string(blocks - 1) + ".conv1.weight"),
              nullptr);
    EXPECT_EQ(model->generator().FindParam("g.block" + std::to_string(blocks) +
                                           ".conv1.weight"),
              nullptr);
    EXPECT_NE(model->discriminator().FindParam(
                  "d.block" + std::to_string(blocks + 1) + ".conv1.weight"),
              nullptr);
    EXPECT_NE(model->generator().FindParam("g.attn.gamma"), nullptr);
    Backend* b = model->backend();
    const Tensor z = Random({2, model->config().z_dim});
    const Tensor images = model->Generate(z, {0, 1}, kWarmUpMode);
    EXPECT_EQ(images.shape(), (Shape{2, 3, res, res}));
    const Tensor logits = model->Discriminate(images, {0, 1}, kWarmUpMode);
    EXPECT_EQ(logits.shape(), (Shape{2, 1}));
    const Tensor dimages = model->DiscriminateBackward(Random({2, 1}));
    EXPECT_EQ(dimages.shape(), images.shape());
    model->GenerateBackward(dimages);
    EXPECT_TRUE(b->AllFinite(dimages));
    for (Param& p : model->generator().params())
      EXPECT_TRUE(b->AllFinite(p.grad)) << p.name;
  }
}

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
  CheckGenerator(model.get(), 3, {0, 0, 0}, kDcganSamples);
}

TEST_F(ModelGradCheck, DcganDiscriminator) {
  std::unique_ptr<GanModel> model = Make(Dcgan(3));
  ASSERT_NE(model, nullptr);
  CheckDiscriminator(model.get(), 2, {0, 0}, kDcganSamples);
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
      EXPECT_TRUE(
          std::all_of(g.begin(), g.end(), [](float v) { return v == 0.0f; }))
          << config.name << " " << p.name;
    }
  }
}

// D's own step runs without an input gradient (nothing upstream of the
// images trains): its parameter gradients must not change.
TEST_F(ModelGradCheck, DiscriminatorWithoutInputGradsKeepsParamGrads) {
  for (const ModelConfig& config : {Dcgan(1), SmallBigGan(true)}) {
    std::unique_ptr<GanModel> model = Make(config);
    ASSERT_NE(model, nullptr);
    const Tensor x = Random({2, config.image_channels, 32, 32}, 0.5f);
    const Tensor dy = Random({2, 1});
    const std::vector<int> labels = {3, 2};
    model->Discriminate(x, labels, kWarmUpMode);
    auto grads = [&](bool input_grads) {
      model->discriminator().ZeroGrads();
      model->Discriminate(x, labels, {true, false, true, input_grads});
      model->DiscriminateBackward(dy);
      std::vector<std::vector<float>> out;
      for (const Param& p : model->discriminator().params())
        out.push_back(backend_->ToHost(p.grad).ToVector());
      return out;
    };
    const auto with = grads(true);
    const auto without = grads(false);
    ASSERT_EQ(with.size(), without.size());
    for (size_t i = 0; i < with.size(); ++i)
      EXPECT_EQ(with[i], without[i])
          << config.name << " " << model->discriminator().params()[i].name;
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

TEST(MakeModelTest, RejectsNonPositiveZDim) {
  for (const char* name : {"dcgan32", "biggan32"}) {
    for (int z_dim : {0, -4}) {
      ModelConfig c = SmallBigGan(true);
      c.name = name;
      c.z_dim = z_dim;
      ExpectRejected(c, {"z_dim", std::to_string(z_dim)});
    }
  }
}

TEST(MakeModelTest, RejectsBadBigGanWidthAndClasses) {
  ModelConfig c = SmallBigGan(true);
  c.width = 5;
  ExpectRejected(c, {"width", "5"});
  c = SmallBigGan(true);
  c.num_classes = 0;
  ExpectRejected(c, {"num_classes"});
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

TEST(MakeModelTest, RejectsResolutionOtherThanTheModels) {
  for (const char* name : {"dcgan32", "biggan32"}) {
    ModelConfig c = SmallBigGan(true);
    c.name = name;
    c.resolution = 64;
    ExpectRejected(c, {"resolution", "64", name});
  }
  ModelConfig c = BigGanAt(128, 2, false);
  c.resolution = 64;
  ExpectRejected(c, {"resolution", "64", "biggan128"});
}

TEST(MakeModelTest, RejectsAttentionOnChannelsNotDivisibleBy8) {
  ModelConfig c = BigGanAt(64, 2, true);
  ExpectRejected(c, {"attention", "width 2", "multiple of 8"});
  c.attention = false;
  std::unique_ptr<Backend> backend = MakeCpuBackend(1);
  EXPECT_TRUE(MakeModel(c, backend.get()).ok());
  c = BigGanAt(128, 8, true);
  EXPECT_TRUE(MakeModel(c, backend.get()).ok());
}

TEST(MakeModelTest, RejectsZDimNotDivisibleByBigGanChunks) {
  ModelConfig c = BigGanAt(64, 2, false);
  c.z_dim = 128;  // 5 chunks at 64 pixels
  ExpectRejected(c, {"z_dim", "128", "5 chunks"});
  EXPECT_EQ(DefaultModelConfig("biggan128").z_dim % 6, 0);
  EXPECT_EQ(DefaultModelConfig("biggan128").resolution, 128);
}

}  // namespace
}  // namespace paragan

// GanTrainer: bit-identical resume from a checkpoint, checkpoint validation,
// config validation, and a short training sanity run.

#include "worker/train/gan_trainer.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "common/rng.h"
#include "common/tensor_io.h"
#include "gtest/gtest.h"
#include "dataloader/datasets/dataset.h"
#include "dataloader/datasets/sampler.h"
#include "worker/engine/model_registry.h"

namespace paragan {
namespace {

constexpr uint64_t kDataSeed = 5;
// One thread: bazel runs test binaries side by side on small machines, and
// OpenMP threads spinning against each other there cost far more than the
// second core gains.
constexpr int kThreads = 1;

std::string TempPath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return std::string(dir != nullptr ? dir : "/tmp") + "/" + name;
}

// Real batches as training_run.cc serves them: an EpochSampler over the
// synthetic dataset, decoded by LoadBatch.
class RealBatches {
 public:
  RealBatches(const Dataset& data, int batch, uint64_t seed, Backend* backend)
      : data_(data),
        sampler_(data.info().size, seed),
        batch_(batch),
        backend_(backend),
        host_(Tensor::Host({batch, data.info().channels, data.info().height,
                            data.info().width})) {}

  BatchSource Source() {
    return [this](Tensor* images, std::vector<int>* labels) {
      sampler_.NextBatch(batch_, &indices_);
      labels->assign(batch_, 0);
      LoadBatch(data_, indices_, host_.data(), labels->data(), kThreads);
      *images = backend_->FromHost(host_);
    };
  }
  EpochSampler& sampler() { return sampler_; }

 private:
  const Dataset& data_;
  EpochSampler sampler_;
  int batch_;
  Backend* backend_;
  Tensor host_;
  std::vector<int64_t> indices_;
};

TrainerConfig SmallConfig(const std::string& model) {
  TrainerConfig c = DefaultTrainerConfig(model);
  c.model.image_channels = 1;
  c.model.num_classes = 10;
  c.batch_size = 8;
  c.seed = 7;
  if (model == "biggan32") {
    c.model.width = 8;  // 32 channels (attention needs a multiple of 8)
    c.model.z_dim = 32;
    c.d_steps = 2;
  }
  return c;
}

std::unique_ptr<GanTrainer> MakeTrainer(const TrainerConfig& config,
                                        Backend* backend) {
  auto trainer = GanTrainer::Create(config, backend);
  EXPECT_TRUE(trainer.ok()) << trainer.status();
  return trainer.ok() ? std::move(trainer).value() : nullptr;
}

// Every tensor a trainer holds: G and D parameters and buffers, the EMA
// generator's parameters and buffers, and (through SaveState) Adam's moments
// and the counters, as raw bytes keyed by name.
std::vector<std::pair<std::string, std::string>> Snapshot(GanTrainer* t) {
  std::vector<std::pair<std::string, std::string>> out;
  Backend* b = t->model().backend();
  auto add = [&](const std::string& name, const Tensor& tensor) {
    Tensor host = b->ToHost(tensor);
    out.emplace_back(name,
                     std::string(reinterpret_cast<const char*>(host.data()),
                                 host.numel() * sizeof(float)));
  };
  for (auto [prefix, store] :
       {std::pair<std::string, ParamStore*>{"g/", &t->model().generator()},
        {"d/", &t->model().discriminator()},
        {"ema/", &t->ema_model().generator()}}) {
    for (const Param& p : store->params()) add(prefix + p.name, p.value);
    for (auto& [name, buf] : store->buffers()) add(prefix + name, *buf);
  }
  auto state = t->SaveState();
  EXPECT_TRUE(state.ok()) << state.status();
  if (state.ok())
    for (const NamedArray& a : *state)
      out.emplace_back("state/" + a.name, a.bytes);
  return out;
}

void ExpectBitwiseEqual(
    const std::vector<std::pair<std::string, std::string>>& a,
    const std::vector<std::pair<std::string, std::string>>& b) {
  ASSERT_EQ(a.size(), b.size());
  int differing = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].first, b[i].first);
    ASSERT_EQ(a[i].second.size(), b[i].second.size()) << a[i].first;
    if (std::memcmp(a[i].second.data(), b[i].second.data(),
                    a[i].second.size()) != 0) {
      ADD_FAILURE() << a[i].first << " differs";
      if (++differing >= 10) return;
    }
  }
}

std::vector<float> ToVector(Backend* b, const Tensor& t) {
  return b->ToHost(t).ToVector();
}

absl::StatusOr<std::vector<NamedArray>> SaveWithSampler(
    GanTrainer* t, const EpochSampler& sampler) {
  auto arrays = t->SaveState();
  if (!arrays.ok()) return arrays.status();
  const EpochSampler::State s = sampler.state();
  auto a = MakeInt64Array("meta/sampler", {2}, {s.epoch, s.cursor});
  if (!a.ok()) return a.status();
  arrays->push_back(std::move(a).value());
  return arrays;
}

class ResumeTest : public ::testing::TestWithParam<std::string> {};

// Train A for 6 steps, checkpointing after step 3; B restores that
// checkpoint and trains steps 4-6: both must end bit for bit alike.
TEST_P(ResumeTest, CheckpointRoundTripResumesBitIdentically) {
  const TrainerConfig config = SmallConfig(GetParam());
  std::unique_ptr<Backend> backend = MakeCpuBackend(kThreads);
  std::unique_ptr<Dataset> data =
      MakeSyntheticDataset(256, 1, 32, 10, kDataSeed);
  const std::string path = TempPath("resume_" + GetParam() + ".pgt");

  std::unique_ptr<GanTrainer> a = MakeTrainer(config, backend.get());
  ASSERT_NE(a, nullptr);
  RealBatches batches_a(*data, config.batch_size, config.seed, backend.get());
  for (int i = 0; i < 3; ++i) a->Step(batches_a.Source());
  auto saved = SaveWithSampler(a.get(), batches_a.sampler());
  ASSERT_TRUE(saved.ok()) << saved.status();
  ASSERT_TRUE(WriteCheckpoint(path, *saved).ok());

  // EMA samples right after the checkpoint (eval mode changes no state).
  Rng zrng(99);
  const Tensor z = a->RandomZ(6, &zrng);
  const std::vector<int> labels = {0, 1, 2, 3, 4, 5};
  const std::vector<float> sample_a =
      ToVector(backend.get(), a->SampleEma(z, labels));

  std::vector<StepStats> stats_a;
  for (int i = 0; i < 3; ++i) stats_a.push_back(a->Step(batches_a.Source()));

  std::unique_ptr<GanTrainer> b = MakeTrainer(config, backend.get());
  ASSERT_NE(b, nullptr);
  auto loaded = ReadTensorFile(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_TRUE(b->RestoreState(*loaded).ok());
  EXPECT_EQ(b->step(), 3);
  RealBatches batches_b(*data, config.batch_size, config.seed, backend.get());
  const NamedArray* s = FindArray(*loaded, "meta/sampler");
  ASSERT_NE(s, nullptr);
  auto sv = ToInt64Vector(*s);
  ASSERT_TRUE(sv.ok());
  ASSERT_TRUE(batches_b.sampler().SetState({(*sv)[0], (*sv)[1]}).ok());

  // The restored EMA generator samples exactly what A's did.
  EXPECT_EQ(ToVector(backend.get(), b->SampleEma(z, labels)), sample_a);

  for (int i = 0; i < 3; ++i) {
    const StepStats sb = b->Step(batches_b.Source());
    EXPECT_EQ(sb.d_loss, stats_a[i].d_loss) << "step " << 4 + i;
    EXPECT_EQ(sb.g_loss, stats_a[i].g_loss) << "step " << 4 + i;
    EXPECT_EQ(sb.d_real, stats_a[i].d_real) << "step " << 4 + i;
    EXPECT_EQ(sb.d_fake, stats_a[i].d_fake) << "step " << 4 + i;
  }
  EXPECT_EQ(a->step(), 6);
  EXPECT_EQ(b->step(), 6);
  ExpectBitwiseEqual(Snapshot(a.get()), Snapshot(b.get()));
  EXPECT_EQ(ToVector(backend.get(), b->SampleEma(z, labels)),
            ToVector(backend.get(), a->SampleEma(z, labels)));
}

INSTANTIATE_TEST_SUITE_P(Models, ResumeTest,
                         ::testing::Values("dcgan32", "biggan32"));

// A trainer that has taken one step, and its state.
struct Trained {
  std::unique_ptr<GanTrainer> trainer;
  std::vector<NamedArray> state;
};

Trained TrainOneStep(const TrainerConfig& config, Backend* backend,
                     const Dataset& data) {
  Trained t;
  t.trainer = MakeTrainer(config, backend);
  if (t.trainer == nullptr) return t;
  RealBatches batches(data, config.batch_size, config.seed, backend);
  t.trainer->Step(batches.Source());
  auto state = t.trainer->SaveState();
  EXPECT_TRUE(state.ok()) << state.status();
  if (state.ok()) t.state = std::move(state).value();
  return t;
}

class RestoreErrorTest : public ::testing::Test {
 protected:
  RestoreErrorTest()
      : backend_(MakeCpuBackend(kThreads)),
        data_(MakeSyntheticDataset(64, 1, 32, 10, kDataSeed)) {}

  // Restores `arrays` into a fresh trainer (seeded differently from the one
  // that wrote them) and expects failure naming every needle, with the
  // trainer unchanged.
  void ExpectRejected(const TrainerConfig& config,
                      const std::vector<NamedArray>& arrays,
                      const std::vector<std::string>& needles) {
    TrainerConfig other = config;
    other.seed = config.seed + 1;
    std::unique_ptr<GanTrainer> t = MakeTrainer(other, backend_.get());
    ASSERT_NE(t, nullptr);
    const auto before = Snapshot(t.get());
    const absl::Status status = t->RestoreState(arrays);
    ASSERT_FALSE(status.ok());
    const std::string msg(status.message());
    for (const std::string& needle : needles)
      EXPECT_NE(msg.find(needle), std::string::npos)
          << "'" << msg << "' lacks '" << needle << "'";
    EXPECT_EQ(t->step(), 0);
    ExpectBitwiseEqual(before, Snapshot(t.get()));
  }

  std::unique_ptr<Backend> backend_;
  std::unique_ptr<Dataset> data_;
};

TEST_F(RestoreErrorTest, DifferentModelIsRejectedNamingBoth) {
  Trained dcgan = TrainOneStep(SmallConfig("dcgan32"), backend_.get(), *data_);
  ASSERT_NE(dcgan.trainer, nullptr);
  ExpectRejected(SmallConfig("biggan32"), dcgan.state,
                 {"dcgan32 c=1", "biggan32 c=1"});
  // Same model name, different width.
  TrainerConfig wide = SmallConfig("biggan32");
  wide.model.width = 16;
  Trained narrow =
      TrainOneStep(SmallConfig("biggan32"), backend_.get(), *data_);
  ASSERT_NE(narrow.trainer, nullptr);
  ExpectRejected(wide, narrow.state, {"w=8", "w=16"});
}

TEST_F(RestoreErrorTest, MissingTensorIsRejectedNamingIt) {
  const TrainerConfig config = SmallConfig("dcgan32");
  Trained t = TrainOneStep(config, backend_.get(), *data_);
  ASSERT_NE(t.trainer, nullptr);
  for (const std::string name :
       {"param/d.conv2.weight", "buffer/g.bn1.running_var",
        "opt/g.fc.weight.adam_v", "ema/g.deconv3.bias"}) {
    std::vector<NamedArray> arrays;
    for (const NamedArray& a : t.state)
      if (a.name != name) arrays.push_back(a);
    ASSERT_EQ(arrays.size() + 1, t.state.size()) << name;
    ExpectRejected(config, arrays, {name});
  }
  std::vector<NamedArray> no_counters;
  for (const NamedArray& a : t.state)
    if (a.name != "meta/counters") no_counters.push_back(a);
  ExpectRejected(config, no_counters, {"meta/counters"});
}

TEST_F(RestoreErrorTest, WrongShapeIsRejectedNamingIt) {
  const TrainerConfig config = SmallConfig("dcgan32");
  Trained t = TrainOneStep(config, backend_.get(), *data_);
  ASSERT_NE(t.trainer, nullptr);
  std::vector<NamedArray> arrays = t.state;
  bool found = false;
  for (NamedArray& a : arrays) {
    if (a.name != "param/g.fc.bias") continue;
    ASSERT_EQ(a.dims, (Shape{4096}));
    a.dims = {64, 64};  // same byte count, so only the shape is wrong
    found = true;
  }
  ASSERT_TRUE(found);
  ExpectRejected(config, arrays, {"param/g.fc.bias", "[64, 64]", "[4096]"});
}

TEST(CheckpointFileTest, CorruptedFileIsRejected) {
  std::unique_ptr<Backend> backend = MakeCpuBackend(kThreads);
  std::unique_ptr<GanTrainer> t =
      MakeTrainer(SmallConfig("dcgan32"), backend.get());
  ASSERT_NE(t, nullptr);
  auto state = t->SaveState();
  ASSERT_TRUE(state.ok());
  const std::string path = TempPath("corrupt.pgt");
  ASSERT_TRUE(WriteCheckpoint(path, *state).ok());
  ASSERT_TRUE(ReadTensorFile(path).ok());
  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  ASSERT_GT(bytes.size(), 1000u);
  for (size_t pos : {bytes.size() / 2, size_t{20}, bytes.size() - 1}) {
    std::string corrupted = bytes;
    corrupted[pos] = static_cast<char>(corrupted[pos] ^ 0x10);
    {
      std::ofstream out(path, std::ios::binary | std::ios::trunc);
      out.write(corrupted.data(),
                static_cast<std::streamsize>(corrupted.size()));
    }
    EXPECT_FALSE(ReadTensorFile(path).ok()) << "byte " << pos;
  }
}

void ExpectCreateFails(const TrainerConfig& config,
                       const std::vector<std::string>& needles) {
  std::unique_ptr<Backend> backend = MakeCpuBackend(1);
  auto t = GanTrainer::Create(config, backend.get());
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string msg(t.status().message());
  for (const std::string& needle : needles)
    EXPECT_NE(msg.find(needle), std::string::npos)
        << "'" << msg << "' lacks '" << needle << "'";
}

// DefaultTrainerConfig reads the model registry; these are the numbers the
// models have always trained with.
TEST(DefaultTrainerConfigTest, TakesTheRegisteredModelsDefaults) {
  for (const ModelSpec* spec : RegisteredModels()) {
    const TrainerConfig c = DefaultTrainerConfig(spec->name);
    EXPECT_EQ(c.model.name, spec->name);
    EXPECT_EQ(c.model.resolution, spec->config.resolution) << spec->name;
    EXPECT_EQ(c.model.z_dim, spec->config.z_dim) << spec->name;
    EXPECT_EQ(c.g_adam.lr, spec->trainer.g_adam.lr) << spec->name;
    EXPECT_EQ(c.d_adam.lr, spec->trainer.d_adam.lr) << spec->name;
    EXPECT_EQ(c.d_steps, spec->trainer.d_steps) << spec->name;
    EXPECT_EQ(c.loss, spec->trainer.loss) << spec->name;
    EXPECT_EQ(c.batch_size, 64);
    EXPECT_EQ(c.ema_decay, 0.999f);
  }
  const TrainerConfig d = DefaultTrainerConfig("dcgan32");
  EXPECT_EQ(d.g_adam.lr, 2e-4f);
  EXPECT_EQ(d.g_adam.beta1, 0.5f);
  EXPECT_EQ(d.d_adam.eps, 1e-8f);
  EXPECT_EQ(d.d_steps, 1);
  const TrainerConfig b = DefaultTrainerConfig("biggan128");
  EXPECT_EQ(b.model.resolution, 128);
  EXPECT_EQ(b.model.z_dim, 120);
  EXPECT_EQ(b.g_adam.lr, 1e-4f);
  EXPECT_EQ(b.g_adam.beta1, 0.0f);
  EXPECT_EQ(b.g_adam.beta2, 0.999f);
  EXPECT_EQ(b.g_adam.eps, 1e-6f);
  EXPECT_EQ(b.d_adam.lr, 4e-4f);
  EXPECT_EQ(b.d_steps, 2);
  EXPECT_EQ(b.loss, GanLoss::kHinge);
}

// What every caller of DefaultTrainerConfig gets for a name nobody
// registered: the generic defaults, refused by Create with the list.
TEST(DefaultTrainerConfigTest, AnUnknownModelIsRefusedListingTheKnownOnes) {
  const TrainerConfig c = DefaultTrainerConfig("stylegan9");
  EXPECT_EQ(c.model.name, "stylegan9");
  EXPECT_EQ(c.d_steps, 1);
  std::unique_ptr<Backend> backend = MakeCpuBackend(kThreads);
  auto trainer = GanTrainer::Create(c, backend.get());
  ASSERT_FALSE(trainer.ok());
  EXPECT_EQ(trainer.status().message(),
            "unknown model 'stylegan9': " + ModelFlagHelp());
}

TEST(CreateTest, RejectsBadConfigs) {
  TrainerConfig c = SmallConfig("dcgan32");
  c.batch_size = 0;
  ExpectCreateFails(c, {"batch_size", "0"});
  c = SmallConfig("dcgan32");
  c.d_steps = 0;
  ExpectCreateFails(c, {"d_steps", "0"});
  c = SmallConfig("dcgan32");
  c.ema_decay = 1.5f;
  ExpectCreateFails(c, {"ema_decay", "1.5"});
  c = SmallConfig("dcgan32");
  c.ema_decay = std::nanf("");
  ExpectCreateFails(c, {"ema_decay", "nan"});
  c = SmallConfig("dcgan32");
  c.g_adam.lr = -1e-3f;
  ExpectCreateFails(c, {"lr=-0.001"});
  c = SmallConfig("biggan32");
  c.d_adam.lr = -2.0f;
  ExpectCreateFails(c, {"lr=-2"});
  c = SmallConfig("dcgan32");
  c.d_adam.beta2 = 1.0f;
  ExpectCreateFails(c, {"betas"});
  c = SmallConfig("dcgan32");
  c.model.name = "nosuchgan";
  ExpectCreateFails(c, {"nosuchgan"});
  std::unique_ptr<Backend> backend = MakeCpuBackend(1);
  EXPECT_TRUE(GanTrainer::Create(SmallConfig("dcgan32"), backend.get()).ok());
}

class PiecesTest : public ::testing::TestWithParam<std::string> {};

// Step is exactly its pieces: a trainer driven piece by piece (as the
// distributed worker drives it, with Adam applied here instead of on the
// parameter servers) ends bit for bit like one driven by Step, and computing
// gradients changes no parameter.
TEST_P(PiecesTest, StepEqualsComputeThenApply) {
  const TrainerConfig config = SmallConfig(GetParam());
  std::unique_ptr<Backend> backend = MakeCpuBackend(kThreads);
  std::unique_ptr<Dataset> data =
      MakeSyntheticDataset(64, 1, 32, 10, kDataSeed);
  std::unique_ptr<GanTrainer> a = MakeTrainer(config, backend.get());
  std::unique_ptr<GanTrainer> b = MakeTrainer(config, backend.get());
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  RealBatches batches_a(*data, config.batch_size, config.seed, backend.get());
  RealBatches batches_b(*data, config.batch_size, config.seed, backend.get());
  auto params = [&](ParamStore& s) {
    std::vector<std::vector<float>> out;
    for (const Param& p : s.params())
      out.push_back(ToVector(backend.get(), p.value));
    return out;
  };
  for (int step = 0; step < 3; ++step) {
    const StepStats sa = a->Step(batches_a.Source());
    StepStats sb;
    for (int k = 0; k < config.d_steps; ++k) {
      Tensor real;
      std::vector<int> labels;
      batches_b.Source()(&real, &labels);
      const auto d_before = params(b->model().discriminator());
      const auto g_before = params(b->model().generator());
      b->ComputeDGradients(real, labels, &sb);
      EXPECT_EQ(params(b->model().discriminator()), d_before);
      EXPECT_EQ(params(b->model().generator()), g_before);
      b->ApplyDGradients();
    }
    const auto d_before = params(b->model().discriminator());
    b->ComputeGGradients(&sb);
    EXPECT_EQ(params(b->model().discriminator()), d_before);
    b->ApplyGGradients();
    b->FinishStep();
    EXPECT_EQ(sa.d_loss, sb.d_loss);
    EXPECT_EQ(sa.g_loss, sb.g_loss);
    EXPECT_EQ(sa.d_real, sb.d_real);
    EXPECT_EQ(sa.d_fake, sb.d_fake);
  }
  EXPECT_EQ(b->step(), 3);
  ExpectBitwiseEqual(Snapshot(a.get()), Snapshot(b.get()));
}

INSTANTIATE_TEST_SUITE_P(Models, PiecesTest,
                         ::testing::Values("dcgan32", "biggan32"));

// ~150 DCGAN steps on the synthetic blobs: losses stay finite and D tells
// real from fake (hinge loss: D(real) above D(fake) on average).
TEST(TrainingSanityTest, DcganLearnsToSeparateRealFromFake) {
  TrainerConfig config = SmallConfig("dcgan32");
  config.batch_size = 32;
  constexpr int kSteps = 150, kLast = 20;
  std::unique_ptr<Backend> backend = MakeCpuBackend(kThreads);
  std::unique_ptr<Dataset> data =
      MakeSyntheticDataset(256, 1, 32, 10, kDataSeed);
  std::unique_ptr<GanTrainer> t = MakeTrainer(config, backend.get());
  ASSERT_NE(t, nullptr);
  RealBatches batches(*data, config.batch_size, config.seed, backend.get());
  double real = 0, fake = 0;
  for (int i = 0; i < kSteps; ++i) {
    const StepStats s = t->Step(batches.Source());
    ASSERT_TRUE(std::isfinite(s.d_loss) && std::isfinite(s.g_loss))
        << "step " << i + 1 << ": D " << s.d_loss << " G " << s.g_loss;
    if (i >= kSteps - kLast) {
      real += s.d_real / kLast;
      fake += s.d_fake / kLast;
    }
  }
  EXPECT_GT(real, fake) << "mean D(real) " << real << ", D(fake) " << fake;
  // The EMA generator produces finite images in [-1, 1].
  Rng rng(3);
  const std::vector<float> images =
      ToVector(backend.get(), t->SampleEma(t->RandomZ(4, &rng), {}));
  for (float v : images) ASSERT_TRUE(std::isfinite(v) && v >= -1 && v <= 1);
}

}  // namespace
}  // namespace paragan

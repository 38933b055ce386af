#include "worker/engine/model_registry.h"

#include <algorithm>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "gtest/gtest.h"

namespace paragan {
namespace {

std::vector<std::string> Names() {
  std::vector<std::string> names;
  for (const ModelSpec* spec : RegisteredModels()) names.push_back(spec->name);
  return names;
}

void ExpectAdam(const AdamConfig& got, const AdamConfig& want,
                const std::string& what) {
  EXPECT_EQ(got.lr, want.lr) << what;
  EXPECT_EQ(got.beta1, want.beta1) << what;
  EXPECT_EQ(got.beta2, want.beta2) << what;
  EXPECT_EQ(got.eps, want.eps) << what;
}

// Pins today's models but not the whole list: adding a model must not need
// an edit here.
TEST(ModelRegistry, ListsTheModelsOnceInNaturalOrder) {
  const std::vector<std::string> names = Names();
  EXPECT_EQ(std::set<std::string>(names.begin(), names.end()).size(),
            names.size());
  std::vector<size_t> at;
  for (const char* known : {"biggan32", "biggan64", "biggan128", "dcgan32"}) {
    auto it = std::find(names.begin(), names.end(), known);
    ASSERT_NE(it, names.end()) << known;
    at.push_back(static_cast<size_t>(it - names.begin()));
  }
  EXPECT_TRUE(std::is_sorted(at.begin(), at.end()));  // numbers as numbers
  EXPECT_EQ(RegisteredModelNames(), absl::StrJoin(names, ", "));
  EXPECT_EQ(ModelFlagHelp(), "one of: " + RegisteredModelNames());
  const std::string descriptions = ModelDescriptions();
  for (const ModelSpec* spec : RegisteredModels()) {
    EXPECT_FALSE(spec->description.empty()) << spec->name;
    EXPECT_NE(descriptions.find(spec->description), std::string::npos);
    EXPECT_EQ(spec->config.name, spec->name);
    EXPECT_NE(spec->make, nullptr) << spec->name;
    EXPECT_EQ(FindModelSpec(spec->name), spec);
    EXPECT_EQ(DefaultModelConfig(spec->name).resolution,
              spec->config.resolution);
  }
}

// Every model builds from its defaults and runs G and D once, on its zero
// weights: Initialize takes a minute or more for BigGAN at 64 and 128 pixels
// and full width (model_test checks it, and the gradients, at small widths).
TEST(ModelRegistry, EveryModelBuildsFromItsDefaults) {
  std::unique_ptr<Backend> backend = MakeCpuBackend(2);
  for (const ModelSpec* spec : RegisteredModels()) {
    SCOPED_TRACE(spec->name);
    absl::StatusOr<std::unique_ptr<GanModel>> model =
        MakeModel(spec->config, backend.get());
    ASSERT_TRUE(model.ok()) << model.status();
    GanModel& m = **model;
    EXPECT_EQ(m.config().name, spec->name);
    EXPECT_GT(m.generator().NumParameters(), 0);
    EXPECT_GT(m.discriminator().NumParameters(), 0);
    const ModelConfig& c = spec->config;
    Tensor z = backend->Zeros({2, c.z_dim});
    const std::vector<int> labels = {0, std::max(0, c.num_classes - 1)};
    const Mode eval{false, false, false};
    Tensor images = m.Generate(z, labels, eval);
    EXPECT_EQ(images.shape(),
              (Shape{2, c.image_channels, c.resolution, c.resolution}));
    Tensor logits = m.Discriminate(images, labels, eval);
    EXPECT_EQ(logits.shape(), (Shape{2, 1}));
  }
}

// The numbers every model trained with before the registry existed.
TEST(ModelRegistry, DefaultsAreTheModelsOwn) {
  const ModelSpec* dcgan = FindModelSpec("dcgan32");
  ASSERT_NE(dcgan, nullptr);
  EXPECT_EQ(dcgan->config.image_channels, 1);
  EXPECT_EQ(dcgan->config.resolution, 32);
  EXPECT_EQ(dcgan->config.num_classes, 10);
  EXPECT_EQ(dcgan->config.z_dim, 128);
  EXPECT_EQ(dcgan->config.width, 64);
  EXPECT_TRUE(dcgan->config.attention);
  ExpectAdam(dcgan->trainer.g_adam, {2e-4f, 0.5f, 0.999f, 1e-8f}, "dcgan G");
  ExpectAdam(dcgan->trainer.d_adam, {2e-4f, 0.5f, 0.999f, 1e-8f}, "dcgan D");
  EXPECT_EQ(dcgan->trainer.d_steps, 1);
  EXPECT_EQ(dcgan->trainer.loss, GanLoss::kHinge);
  EXPECT_EQ(dcgan->worker_lease_s, 30);

  for (int res : {32, 64, 128}) {
    const std::string name = "biggan" + std::to_string(res);
    const ModelSpec* b = FindModelSpec(name);
    ASSERT_NE(b, nullptr) << name;
    EXPECT_EQ(b->config.image_channels, 1) << name;
    EXPECT_EQ(b->config.resolution, res) << name;
    EXPECT_EQ(b->config.num_classes, 10) << name;
    EXPECT_EQ(b->config.z_dim, res > 32 ? 120 : 128) << name;
    EXPECT_EQ(b->config.width, 64) << name;
    EXPECT_TRUE(b->config.attention) << name;
    ExpectAdam(b->trainer.g_adam, {1e-4f, 0.0f, 0.999f, 1e-6f}, name + " G");
    ExpectAdam(b->trainer.d_adam, {4e-4f, 0.0f, 0.999f, 1e-6f}, name + " D");
    EXPECT_EQ(b->trainer.d_steps, 2) << name;
    EXPECT_EQ(b->trainer.loss, GanLoss::kHinge) << name;
    EXPECT_EQ(b->worker_lease_s, 180) << name;
  }
}

TEST(ModelRegistry, RefusesAnUnknownNameListingTheKnownOnes) {
  EXPECT_EQ(FindModelSpec("stylegan9"), nullptr);
  EXPECT_EQ(FindModelSpec(""), nullptr);
  EXPECT_EQ(FindModelSpec("DCGAN32"), nullptr);  // names are exact
  absl::StatusOr<const ModelSpec*> spec = GetModelSpec("stylegan9");
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(spec.status().message(),
            "unknown model 'stylegan9': " + ModelFlagHelp());
  for (const ModelSpec* known : RegisteredModels()) {
    EXPECT_NE(spec.status().message().find(known->name), std::string::npos);
  }

  ModelConfig c = DefaultModelConfig("stylegan9");
  EXPECT_EQ(c.name, "stylegan9");
  EXPECT_EQ(c.resolution, 32);
  std::unique_ptr<Backend> backend = MakeCpuBackend(1);
  absl::StatusOr<std::unique_ptr<GanModel>> model = MakeModel(c, backend.get());
  ASSERT_FALSE(model.ok());
  EXPECT_EQ(model.status().message(), spec.status().message());
}

}  // namespace
}  // namespace paragan

#include "worker/train/init_networks.h"

#include <memory>

#include "gtest/gtest.h"
#include "worker/engine/model_registry.h"

namespace paragan {
namespace {

// The servers must start from exactly the networks paragan_train starts
// from (the sync-parity test depends on it), for every tensor and value.
TEST(MakeNetworkInit, EqualsTheTrainersInitialNetworks) {
  TrainerConfig config = DefaultTrainerConfig("dcgan32");
  config.seed = 11;
  absl::StatusOr<NetworkInit> init = MakeNetworkInit(config);
  ASSERT_TRUE(init.ok()) << init.status();
  auto backend = MakeCpuBackend(1);
  auto trainer = GanTrainer::Create(config, backend.get());
  ASSERT_TRUE(trainer.ok()) << trainer.status();
  GanModel& model = (*trainer)->model();
  for (auto [got, store] : {std::make_pair(&init->g, &model.generator()),
                            std::make_pair(&init->d, &model.discriminator())}) {
    const std::vector<TableTensor> want = NetworkTensors(*store);
    ASSERT_EQ(got->size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_EQ((*got)[i].spec.name, want[i].spec.name);
      EXPECT_EQ((*got)[i].spec.shape, want[i].spec.shape);
      EXPECT_EQ((*got)[i].spec.trainable, want[i].spec.trainable);
      EXPECT_EQ((*got)[i].values, want[i].values) << want[i].spec.name;
    }
  }
  EXPECT_EQ(init->model, "dcgan32");
  EXPECT_EQ(init->signature, "dcgan32 c=1 r=32 k=10 z=128 w=64 attn=1");
  EXPECT_EQ(init->d_steps_per_g_step, config.d_steps);
  EXPECT_EQ(init->g_adam.lr, config.g_adam.lr);
  EXPECT_EQ(init->d_adam.beta1, config.d_adam.beta1);
}

TEST(MakeNetworkInit, CarriesTheModelsOptimizerDefaults) {
  TrainerConfig config = DefaultTrainerConfig("biggan32");
  absl::StatusOr<NetworkInit> init = MakeNetworkInit(config);
  ASSERT_TRUE(init.ok()) << init.status();
  EXPECT_EQ(init->d_steps_per_g_step, 2);
  EXPECT_EQ(init->g_adam.lr, 1e-4f);
  EXPECT_EQ(init->d_adam.lr, 4e-4f);
  EXPECT_EQ(init->d_adam.eps, 1e-6f);
}

TEST(MakeNetworkInit, RefusesAnUnknownModel) {
  TrainerConfig config = DefaultTrainerConfig("dcgan32");
  config.model.name = "stylegan9";
  EXPECT_FALSE(MakeNetworkInit(config).ok());
}

// The servers' lease comes from the network file: the registered model's.
TEST(MakeNetworkInit, CarriesTheModelsWorkerLease) {
  absl::StatusOr<NetworkInit> dcgan =
      MakeNetworkInit(DefaultTrainerConfig("dcgan32"));
  ASSERT_TRUE(dcgan.ok()) << dcgan.status();
  EXPECT_EQ(dcgan->worker_lease_s, 30);
  absl::StatusOr<NetworkInit> biggan =
      MakeNetworkInit(DefaultTrainerConfig("biggan32"));
  ASSERT_TRUE(biggan.ok()) << biggan.status();
  EXPECT_EQ(biggan->worker_lease_s, 180);
}

TEST(MakeNetworkInit, NamesTheKnownModelsForAnUnknownOne) {
  absl::StatusOr<NetworkInit> init =
      MakeNetworkInit(DefaultTrainerConfig("stylegan9"));
  ASSERT_FALSE(init.ok());
  EXPECT_EQ(init.status().message(),
            "unknown model 'stylegan9': " + ModelFlagHelp());
}

}  // namespace
}  // namespace paragan

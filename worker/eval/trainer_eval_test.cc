#include "worker/eval/trainer_eval.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>

#include "common/image_io.h"
#include "dataloader/datasets/dataset.h"
#include "gtest/gtest.h"
#include "worker/engine/backend.h"
#include "worker/eval/fid_log.h"
#include "worker/eval/fmnist_cnn.h"
#include "worker/eval/metrics.h"
#include "worker/train/training_run.h"

namespace paragan::eval {
namespace {

constexpr char kWeights[] = "worker/eval/fmnist_cnn.pgt";

std::string TmpDir(const std::string& name) {
  const char* t = std::getenv("TEST_TMPDIR");
  const std::string dir = std::string(t && *t ? t : "/tmp") + "/" + name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// Reference statistics (and features, for KID) of `n` synthetic images,
// saved as paragan_eval would, with fmnist-cnn's features or, when
// `network` differs, labelled as another network's.
std::string SyntheticReference(const std::string& dir, int64_t n,
                               const std::string& network) {
  auto backend = MakeCpuBackend(1, CpuConvLayout::kAuto);
  FmnistCnn net(backend.get());
  EXPECT_TRUE(net.Load(kWeights).ok());
  auto ds = MakeSyntheticDataset(n, 1, 32, 10, 7);
  Tensor images = Tensor::Host({n, 1, 32, 32});
  for (int64_t i = 0; i < n; ++i) ds->Get(i, images.data() + i * 1024, nullptr);
  auto features = net.Features(images);
  EXPECT_TRUE(features.ok()) << features.status();
  auto matrix = FeatureMatrixOf(*features);
  auto stats = ComputeFeatureStats(*matrix, {network, "synthetic", 32});
  EXPECT_TRUE(stats.ok()) << stats.status();
  const std::string path = dir + "/ref.pgt";
  EXPECT_TRUE(SaveFeatureStats(path, *stats).ok());
  EXPECT_TRUE(
      SaveReferenceFeatures(ReferenceFeaturesPath(path), network, *features)
          .ok());
  return path;
}

TrainingRunOptions SyntheticRun(const std::string& out_dir) {
  TrainingRunOptions o;
  o.trainer = DefaultTrainerConfig("dcgan32");
  o.trainer.batch_size = 16;
  o.dataset.name = "synthetic";
  o.dataset.synthetic_size = 256;
  o.dataset.channels = 1;
  o.dataset.resolution = 32;
  o.threads = 1;
  // kAuto picks each conv's layout by timing it, and the two layouts sum in
  // different orders: a busy box could then make the plain and the watched
  // run differ in the last bits for a reason that is not the evaluator.
  o.cpu_layout = CpuConvLayout::kBlocked;
  o.steps = 24;
  o.log_every = 8;
  o.sample_every = 0;
  o.checkpoint_every = 0;
  o.num_samples = 16;
  o.resume = false;
  o.out_dir = out_dir;
  return o;
}

TrainerEvalOptions EvalOptionsFor(const std::string& dir,
                                  const std::string& reference) {
  TrainerEvalOptions e;
  e.weights = kWeights;
  e.reference = reference;
  e.num_samples = 200;
  e.final_samples = 300;
  // A test box may be busy: do not starve the rounds.
  e.priority = BackgroundPriority::kNormal;
  e.csv = dir + "/fid.csv";
  e.png = dir + "/fid.png";
  e.eval.kid_subsets = 5;
  return e;
}

std::string FileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Rounds while training land in fid.csv at increasing G steps, the final one
// at the last step with the final sample count, and the evaluated run
// trains exactly as the same run without an evaluator.
TEST(TrainerEvaluator, ScoresWhileTrainingAndAfterWithoutChangingTraining) {
  const std::string dir = TmpDir("scores");
  const std::string ref =
      SyntheticReference(dir, 300, kFmnistCnnFeatureNetwork);

  TrainingRunOptions plain = SyntheticRun(dir + "/plain");
  ASSERT_TRUE(RunTraining(plain, nullptr).ok());

  auto ev = TrainerEvaluator::Start(EvalOptionsFor(dir, ref));
  ASSERT_TRUE(ev.ok()) << ev.status();
  TrainingRunOptions watched = SyntheticRun(dir + "/watched");
  watched.quality = ev->get();
  watched.eval_every_s = 1e-6;  // every step the evaluator is free
  ASSERT_TRUE(RunTraining(watched, nullptr).ok());

  absl::StatusOr<std::vector<FidRow>> rows = ReadFidCsv(dir + "/fid.csv");
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_GE(rows->size(), 2u);
  for (size_t i = 0; i + 1 < rows->size(); ++i) {
    // (A time budget can end training right after a live round's step.)
    EXPECT_LE((*rows)[i].g_step, (*rows)[i + 1].g_step) << i;
    if (i + 2 < rows->size()) {
      EXPECT_LT((*rows)[i].g_step, (*rows)[i + 1].g_step) << i;
    }
    EXPECT_LE((*rows)[i].wall_s, (*rows)[i + 1].wall_s) << i;
    EXPECT_EQ((*rows)[i].num_samples, 200) << i;
  }
  const FidRow& last = rows->back();
  EXPECT_EQ(last.g_step, 24);
  EXPECT_EQ(last.num_samples, 300);
  EXPECT_EQ(last.network, "fmnist-cnn");
  EXPECT_GT(last.fid, 0);
  EXPECT_FALSE(std::isnan(last.kid_mean));
  EXPECT_GT(last.is_mean, 1);
  EXPECT_EQ((*ev)->rows().size(), rows->size());
  absl::StatusOr<Image> png = DecodeImageFile(dir + "/fid.png");
  ASSERT_TRUE(png.ok()) << png.status();

  // Same seeds, same steps: the snapshots did not perturb training.
  // (Compared as a bool: gtest's diff of two binary files is quadratic.)
  EXPECT_TRUE(FileBytes(dir + "/plain/checkpoint.pgt") ==
              FileBytes(dir + "/watched/checkpoint.pgt"))
      << "the evaluated run's checkpoint differs from the plain run's";
}

TEST(TrainerEvaluator, RefusesAReferenceOfAnotherNetworkBeforeTraining) {
  const std::string dir = TmpDir("refuses");
  const std::string ref = SyntheticReference(dir, 300, "inception_v3_pool3");
  auto ev = TrainerEvaluator::Start(EvalOptionsFor(dir, ref));
  ASSERT_FALSE(ev.ok());
  EXPECT_NE(ev.status().message().find("inception_v3_pool3"), std::string::npos)
      << ev.status();
  EXPECT_FALSE(std::filesystem::exists(dir + "/fid.csv"));

  TrainerEvalOptions bad = EvalOptionsFor(dir, ref);
  bad.network = "vgg";
  ev = TrainerEvaluator::Start(bad);
  ASSERT_FALSE(ev.ok());
  EXPECT_NE(ev.status().message().find("vgg"), std::string::npos)
      << ev.status();
}

}  // namespace
}  // namespace paragan::eval

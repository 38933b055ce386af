// RunTraining end to end on the synthetic dataset: output files, resume,
// stop requests and argument errors.

#include "worker/train/training_run.h"

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "common/image_io.h"
#include "common/tensor_io.h"
#include "gtest/gtest.h"

namespace paragan {
namespace {

namespace fs = std::filesystem;

std::string TempDir(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  const std::string path =
      std::string(dir != nullptr ? dir : "/tmp") + "/" + name;
  fs::remove_all(path);
  return path;
}

TrainingRunOptions SmallRun(const std::string& out_dir) {
  TrainingRunOptions o;
  o.trainer = DefaultTrainerConfig("dcgan32");
  o.trainer.batch_size = 8;
  o.trainer.seed = 3;
  o.dataset.name = "synthetic";
  o.dataset.synthetic_size = 256;
  o.threads = 1;  // see kThreads in gan_trainer_test.cc
  o.steps = 6;
  o.out_dir = out_dir;
  o.log_every = 2;
  o.sample_every = 3;
  o.checkpoint_every = 3;
  o.num_samples = 20;
  return o;
}

// summary.txt as key -> value.
std::map<std::string, std::string> ReadSummary(const std::string& dir) {
  std::map<std::string, std::string> out;
  std::ifstream in(dir + "/summary.txt");
  std::string key, value;
  while (in >> key >> value) out[key] = value;
  return out;
}

int64_t CheckpointStep(const std::string& dir) {
  auto arrays = ReadTensorFile(dir + "/checkpoint.pgt");
  EXPECT_TRUE(arrays.ok()) << arrays.status();
  if (!arrays.ok()) return -1;
  const NamedArray* counters = FindArray(*arrays, "meta/counters");
  EXPECT_NE(counters, nullptr);
  if (counters == nullptr) return -1;
  auto c = ToInt64Vector(*counters);
  EXPECT_TRUE(c.ok() && !c->empty());
  return c.ok() && !c->empty() ? (*c)[0] : -1;
}

void ExpectGrid(const std::string& path) {
  auto image = DecodeImageFile(path);
  ASSERT_TRUE(image.ok()) << image.status();
  // 64 unconditional samples, 8 per row, 32x32 with 2-pixel borders.
  EXPECT_EQ(image->height, 8 * 34 + 2) << path;
  EXPECT_EQ(image->width, 8 * 34 + 2) << path;
  EXPECT_EQ(image->channels, 1) << path;
}

TEST(RunTrainingTest, WritesOutputsAndResumes) {
  const std::string dir = TempDir("run");
  ASSERT_TRUE(RunTraining(SmallRun(dir), nullptr).ok());

  EXPECT_TRUE(fs::exists(dir + "/checkpoint.pgt"));
  EXPECT_EQ(CheckpointStep(dir), 6);
  ExpectGrid(dir + "/grid_000003.png");
  ExpectGrid(dir + "/grid_000006.png");
  EXPECT_FALSE(fs::exists(dir + "/grid_000002.png"));
  ExpectGrid(dir + "/samples.png");
  EXPECT_FALSE(fs::exists(dir + "/samples_labels.npy"));  // unconditional
  auto npy = ReadNpy(dir + "/samples.npy");
  ASSERT_TRUE(npy.ok()) << npy.status();
  EXPECT_EQ(npy->dtype, "|u1");
  EXPECT_EQ(npy->shape, (Shape{20, 32, 32}));
  EXPECT_EQ(npy->bytes.size(), 20u * 32 * 32);
  std::map<std::string, std::string> summary = ReadSummary(dir);
  EXPECT_EQ(summary["model"], "dcgan32");
  EXPECT_EQ(summary["dataset"], "synthetic");
  EXPECT_EQ(summary["steps"], "6");
  EXPECT_EQ(summary["steps_this_run"], "6");

  TrainingRunOptions more = SmallRun(dir);
  more.steps = 8;
  more.resume = true;
  ASSERT_TRUE(RunTraining(more, nullptr).ok());
  summary = ReadSummary(dir);
  EXPECT_EQ(summary["steps"], "8");
  EXPECT_EQ(summary["steps_this_run"], "2");  // resumed at 6, not restarted
  EXPECT_EQ(CheckpointStep(dir), 8);

  // Without resume the run starts over (and overwrites the checkpoint).
  TrainingRunOptions fresh = SmallRun(dir);
  fresh.steps = 2;
  fresh.resume = false;
  ASSERT_TRUE(RunTraining(fresh, nullptr).ok());
  EXPECT_EQ(ReadSummary(dir)["steps_this_run"], "2");
  EXPECT_EQ(CheckpointStep(dir), 2);
}

TEST(RunTrainingTest, ConditionalModelWritesLabels) {
  const std::string dir = TempDir("biggan");
  TrainingRunOptions o = SmallRun(dir);
  o.trainer = DefaultTrainerConfig("biggan32");
  o.trainer.model.width = 8;
  o.trainer.model.z_dim = 32;
  o.trainer.batch_size = 4;
  o.steps = 1;
  o.sample_every = 0;
  o.checkpoint_every = 0;
  o.num_samples = 12;
  ASSERT_TRUE(RunTraining(o, nullptr).ok());
  auto labels = ReadNpy(dir + "/samples_labels.npy");
  ASSERT_TRUE(labels.ok()) << labels.status();
  EXPECT_EQ(labels->dtype, "<i4");
  EXPECT_EQ(labels->shape, (Shape{12}));
  auto npy = ReadNpy(dir + "/samples.npy");
  ASSERT_TRUE(npy.ok()) << npy.status();
  EXPECT_EQ(npy->shape, (Shape{12, 32, 32}));
  // One grid row per class (10 synthetic classes), 8 columns.
  auto grid = DecodeImageFile(dir + "/samples.png");
  ASSERT_TRUE(grid.ok()) << grid.status();
  EXPECT_EQ(grid->height, 10 * 34 + 2);
  EXPECT_EQ(grid->width, 8 * 34 + 2);
}

TEST(RunTrainingTest, StopRequestedBeforeStartCheckpointsAndReturnsOk) {
  const std::string dir = TempDir("stopped");
  std::atomic<bool> stop{true};
  ASSERT_TRUE(RunTraining(SmallRun(dir), &stop).ok());
  EXPECT_TRUE(fs::exists(dir + "/checkpoint.pgt"));
  EXPECT_EQ(CheckpointStep(dir), 0);
  EXPECT_FALSE(fs::exists(dir + "/summary.txt"));
  EXPECT_FALSE(fs::exists(dir + "/samples.npy"));
  // The next run resumes from that checkpoint.
  ASSERT_TRUE(RunTraining(SmallRun(dir), nullptr).ok());
  EXPECT_EQ(ReadSummary(dir)["steps"], "6");
}

void ExpectRunFails(const TrainingRunOptions& o, const std::string& needle) {
  const absl::Status status = RunTraining(o, nullptr);
  ASSERT_FALSE(status.ok());
  const std::string msg(status.message());
  EXPECT_NE(msg.find(needle), std::string::npos)
      << "'" << msg << "' lacks '" << needle << "'";
}

TEST(RunTrainingTest, UnknownDatasetFails) {
  TrainingRunOptions o = SmallRun(TempDir("unknown"));
  o.dataset.name = "imagenet21k";
  ExpectRunFails(o, "imagenet21k");
}

TEST(RunTrainingTest, FashionMnistWithMissingDirectoryFailsNamingIt) {
  TrainingRunOptions o = SmallRun(TempDir("fmnist"));
  o.dataset.name = "fashion_mnist";
  o.dataset.path = TempDir("no_such_dir") + "/fashion";
  ExpectRunFails(o, o.dataset.path);
}

TEST(RunTrainingTest, UncreatableOutputDirectoryFails) {
  const std::string file = TempDir("plain_file");
  std::ofstream(file) << "not a directory";
  TrainingRunOptions o = SmallRun(file + "/out");
  ExpectRunFails(o, file + "/out");
}

TEST(RunTrainingTest, ResumingWithAnotherModelFails) {
  const std::string dir = TempDir("mismatch");
  TrainingRunOptions o = SmallRun(dir);
  o.steps = 1;
  ASSERT_TRUE(RunTraining(o, nullptr).ok());
  o.trainer = DefaultTrainerConfig("biggan32");
  o.trainer.model.width = 8;
  ExpectRunFails(o, "biggan32");
}

TEST(RunTrainingTest, NonPositiveIntervalsAreRejected) {
  TrainingRunOptions o = SmallRun(TempDir("intervals"));
  o.log_every = 0;
  ExpectRunFails(o, "log_every");
  o = SmallRun(TempDir("intervals"));
  o.steps = -1;
  ExpectRunFails(o, "steps");
}

}  // namespace
}  // namespace paragan

#include "worker/eval/evaluate.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "common/image_io.h"
#include "common/tensor_io.h"
#include "dataloader/datasets/dataset.h"
#include "gtest/gtest.h"
#include "worker/engine/backend.h"
#include "worker/eval/fmnist_cnn.h"
#include "worker/eval/generated_samples.h"
#include "worker/train/gan_trainer.h"

namespace paragan::eval {
namespace {

constexpr char kWeights[] = "worker/eval/fmnist_cnn.pgt";

std::string TmpDir() {
  const char* t = std::getenv("TEST_TMPDIR");
  return t && *t ? t : "/tmp";
}

// n synthetic 1x32x32 images in [-1, 1].
Tensor Synthetic(int64_t n, uint64_t seed) {
  auto ds = MakeSyntheticDataset(n, 1, 32, 10, seed);
  Tensor t = Tensor::Host({n, 1, 32, 32});
  for (int64_t i = 0; i < n; ++i) ds->Get(i, t.data() + i * 1024, nullptr);
  return t;
}

std::vector<uint8_t> Quantize(const Tensor& t) {
  std::vector<uint8_t> q(t.numel());
  for (int64_t i = 0; i < t.numel(); ++i) q[i] = PixelFromUnit(t.data()[i]);
  return q;
}

NpyArray MakeNpy(const std::string& dtype, Shape shape, const void* data,
                 size_t bytes) {
  NpyArray a;
  a.dtype = dtype;
  a.shape = shape;
  a.bytes.assign(static_cast<const char*>(data), bytes);
  return a;
}

TEST(EvaluateTest, UnitFromPixelInvertsPixelFromUnit) {
  for (int v = 0; v < 256; ++v) {
    const float x = UnitFromPixel(static_cast<uint8_t>(v));
    EXPECT_EQ(x, static_cast<float>(v) / 127.5f - 1.0f);
    EXPECT_GE(x, -1.0f);
    EXPECT_LE(x, 1.0f);
    EXPECT_EQ(PixelFromUnit(x), v) << v;
  }
  EXPECT_EQ(UnitFromPixel(0), -1.0f);
  EXPECT_EQ(UnitFromPixel(255), 1.0f);
}

TEST(EvaluateTest, Uint8SamplesConvertedExactly) {
  std::vector<uint8_t> px(3 * 1024);
  for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>(i * 7);
  for (Shape s : {Shape{3, 32, 32}, Shape{3, 1, 32, 32}, Shape{3, 32, 32, 1}}) {
    auto t = SamplesFromNpy(MakeNpy("|u1", s, px.data(), px.size()), "x.npy");
    ASSERT_TRUE(t.ok()) << t.status();
    ASSERT_EQ(t->shape(), (Shape{3, 1, 32, 32}));
    for (size_t i = 0; i < px.size(); ++i)
      ASSERT_EQ(t->data()[i], px[i] / 127.5f - 1.0f);
  }
  // Through a real file as WriteSamples writes it.
  const std::string path = TmpDir() + "/u8.npy";
  ASSERT_TRUE(WriteNpy(path, "|u1", {3, 32, 32}, px.data()).ok());
  auto t = LoadSamplesNpy(path);
  ASSERT_TRUE(t.ok()) << t.status();
  for (size_t i = 0; i < px.size(); ++i)
    ASSERT_EQ(PixelFromUnit(t->data()[i]), px[i]);
}

TEST(EvaluateTest, FloatSamplesPassThroughAndRangeChecked) {
  Tensor x = Synthetic(4, 3);
  auto t = SamplesFromNpy(MakeNpy("<f4", {4, 32, 32}, x.data(), x.numel() * 4),
                          "f.npy");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(std::memcmp(t->data(), x.data(), x.numel() * 4), 0);
  x.data()[1030] = 3.0f;  // image 1 pixel 6
  t = SamplesFromNpy(MakeNpy("<f4", {4, 32, 32}, x.data(), x.numel() * 4),
                     "f.npy");
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("[-1, 1]"), std::string::npos);
  EXPECT_NE(t.status().message().find("image 1 at value 6"), std::string::npos)
      << t.status();
  x.data()[1030] = NAN;
  EXPECT_FALSE(
      SamplesFromNpy(MakeNpy("<f4", {4, 32, 32}, x.data(), x.numel() * 4), "f")
          .ok());
}

TEST(EvaluateTest, ShapesAndChannelsLastAccepted) {
  std::vector<uint8_t> px(2 * 28 * 28 * 3);
  for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>(i % 251);
  auto t = SamplesFromNpy(MakeNpy("|u1", {2, 28, 28}, px.data(), 2 * 784), "a");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->shape(), (Shape{2, 1, 28, 28}));
  // [N, H, W, 3] is transposed to [N, 3, H, W].
  t = SamplesFromNpy(MakeNpy("|u1", {2, 28, 28, 3}, px.data(), px.size()), "b");
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_EQ(t->shape(), (Shape{2, 3, 28, 28}));
  // image 1, channel 2, pixel (row 4, col 5)
  const size_t hwc = ((1 * 28 + 4) * 28 + 5) * 3 + 2;
  const size_t chw = ((1 * 3 + 2) * 28 + 4) * 28 + 5;
  EXPECT_EQ(t->data()[chw], UnitFromPixel(px[hwc]));
}

TEST(EvaluateTest, WrongShapeOrDtypeRefused) {
  std::vector<uint8_t> px(2 * 28 * 28 * 3);
  auto t = SamplesFromNpy(MakeNpy("|u1", {2, 5, 28, 28}, px.data(), 0),
                          "bad.npy");
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("bad.npy"), std::string::npos);
  EXPECT_NE(t.status().message().find("[2, 5, 28, 28]"), std::string::npos);
  EXPECT_FALSE(
      SamplesFromNpy(MakeNpy("|u1", {2, 3, 32, 32}, px.data(), 0), "x").ok());
  EXPECT_FALSE(
      SamplesFromNpy(MakeNpy("|u1", {1024}, px.data(), 1024), "x").ok());
  EXPECT_FALSE(SamplesFromNpy(MakeNpy("|u1", {0, 32, 32}, px.data(), 0), "x")
                   .ok());
  t = SamplesFromNpy(MakeNpy("<i4", {1, 32, 32}, px.data(), 4096), "x");
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("dtype"), std::string::npos);
  // On disk, through the loader.
  const std::string path = TmpDir() + "/bad.npy";
  ASSERT_TRUE(WriteNpy(path, "|u1", {2, 2, 28, 28}, px.data()).ok());
  EXPECT_FALSE(LoadSamplesNpy(path).ok());
  EXPECT_FALSE(LoadSamplesNpy(TmpDir() + "/missing.npy").ok());
}

TEST(EvaluateTest, ImageFolderReadInNameOrder) {
  const std::string dir = TmpDir() + "/folder";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::vector<uint8_t> a(32 * 32, 10), b(32 * 32, 200);
  b[33] = 7;
  ASSERT_TRUE(WritePng(dir + "/b.png", b.data(), 32, 32, 1).ok());
  ASSERT_TRUE(WritePng(dir + "/a.png", a.data(), 32, 32, 1).ok());
  {
    std::ofstream(dir + "/notes.txt") << "ignored";
  }
  auto t = SamplesFromImageFolder(dir);
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_EQ(t->shape(), (Shape{2, 1, 32, 32}));
  EXPECT_EQ(t->data()[0], UnitFromPixel(10));
  EXPECT_EQ(t->data()[1024 + 33], UnitFromPixel(7));
  // A differently sized image is refused, naming it.
  std::vector<uint8_t> c(28 * 28, 0);
  ASSERT_TRUE(WritePng(dir + "/c.png", c.data(), 28, 28, 1).ok());
  t = SamplesFromImageFolder(dir);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("c.png"), std::string::npos)
      << t.status();
  EXPECT_FALSE(SamplesFromImageFolder(dir + "/missing").ok());
  std::filesystem::create_directories(dir + "/empty");
  t = SamplesFromImageFolder(dir + "/empty");
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("no .png"), std::string::npos);
}

class WithNet : public ::testing::Test {
 protected:
  void SetUp() override {
    backend_ = MakeCpuBackend(1, CpuConvLayout::kAuto);
    net_ = std::make_unique<FmnistCnn>(backend_.get());
    auto st = net_->Load(kWeights);
    ASSERT_TRUE(st.ok()) << st.status();
  }
  Reference RefOf(const Tensor& images, const std::string& network) {
    Reference r;
    auto f = net_->Features(images);
    EXPECT_TRUE(f.ok());
    r.features = *f;
    auto fm = FeatureMatrixOf(r.features);
    auto s = ComputeFeatureStats(*fm, {network, "synthetic", 32});
    EXPECT_TRUE(s.ok()) << s.status();
    r.stats = *s;
    return r;
  }
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<FmnistCnn> net_;
};

TEST_F(WithNet, FidAgainstOwnStatsIsZero) {
  Tensor x = Synthetic(300, 5);
  Reference ref = RefOf(x, kFmnistCnnFeatureNetwork);
  EvalOptions o;
  o.kid_subsets = 5;
  auto r = EvaluateSamples(net_.get(), x, ref, o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->num_samples, 300);
  EXPECT_NEAR(r->fid, 0.0, 1e-6);
  ASSERT_TRUE(r->has_kid);
  EXPECT_EQ(r->kid_subset_size, 300);
  // (Against itself the unbiased MMD^2 is negative: the cross term keeps
  // the diagonal k(x_i, x_i) that the within-set terms leave out.)
  EXPECT_TRUE(std::isfinite(r->kid.mean));
  EXPECT_GT(r->is.mean, 1.0);
  // Another synthetic set: a clearly positive FID.
  auto r2 = EvaluateSamples(net_.get(), Synthetic(300, 99), ref, o);
  ASSERT_TRUE(r2.ok());
  EXPECT_GT(r2->fid, 0.0);
  const std::string text = FormatResult(*r);
  EXPECT_NE(text.find("FID(fmnist-cnn) "), std::string::npos);
  EXPECT_NE(text.find("KID(fmnist-cnn) "), std::string::npos);
  EXPECT_NE(text.find("IS(fmnist-cnn) "), std::string::npos);
  EXPECT_NE(ResultJson(*r).find("\"num_samples\": 300"), std::string::npos);
}

TEST_F(WithNet, ImagesTheNetworkCannotScoreRefused) {
  Reference ref = RefOf(Synthetic(300, 5), kFmnistCnnFeatureNetwork);
  Tensor rgb = Tensor::Host({200, 3, 32, 32});
  std::fill(rgb.data(), rgb.data() + rgb.numel(), 0.0f);
  auto r = EvaluateSamples(net_.get(), rgb, ref);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("one-channel 32x32"), std::string::npos)
      << r.status();
}

TEST_F(WithNet, TooFewSamplesSaysHowMany) {
  Reference ref = RefOf(Synthetic(300, 5), kFmnistCnnFeatureNetwork);
  auto r = EvaluateSamples(net_.get(), Synthetic(100, 6), ref);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("at least 129"), std::string::npos)
      << r.status();
}

TEST_F(WithNet, AReferenceInAFolderNotYetMadeIsWrittenThere) {
  const std::string dir = TmpDir();
  // A folder that cannot be made (under a file): refused at once, naming it,
  // before any data is read (the data folder does not exist either).
  ASSERT_TRUE(
      WriteNpy(dir + "/file", "<f4", {1}, std::vector<float>{0}.data()).ok());
  auto bad = LoadOrComputeReference(dir + "/file/sub/ref.pgt", "/no/such/data",
                                    net_.get(), 200);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find(
                "cannot create the folder of the reference statistics " + dir +
                "/file/sub/ref.pgt"),
            std::string::npos)
      << bad.status();
  const std::string data = "/usr/share/datasets/fashion-mnist";
  if (!std::filesystem::exists(data + "/train-images-idx3-ubyte.gz")) {
    GTEST_SKIP() << "no Fashion-MNIST in " << data;
  }
  const std::string path = dir + "/new/cache/ref.pgt";
  auto ref = LoadOrComputeReference(path, data, net_.get(), 200);
  ASSERT_TRUE(ref.ok()) << ref.status();
  EXPECT_TRUE(ref->computed);
  EXPECT_TRUE(std::filesystem::exists(path));
  auto again = LoadOrComputeReference(path, data, net_.get(), 200);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_FALSE(again->computed);  // read back from where it was written
}

// Runs a command, returns its exit status and output (stdout + stderr).
int RunCommand(const std::string& cmd, std::string* out) {
  out->clear();
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return -1;
  char buf[4096];
  size_t k;
  while ((k = fread(buf, 1, sizeof buf, p)) > 0) out->append(buf, k);
  const int st = pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

TEST_F(WithNet, BinaryEndToEnd) {
  const std::string dir = TmpDir();
  // Samples as paragan_sample writes them (uint8 N x 32 x 32).
  Tensor x = Synthetic(200, 7);
  std::vector<uint8_t> q = Quantize(x);
  const std::string npy = dir + "/samples.npy";
  ASSERT_TRUE(WriteNpy(npy, "|u1", {200, 32, 32}, q.data()).ok());
  // Reference of exactly those (dequantized) images: FID ~ 0.
  Tensor xq = Tensor::Host({200, 1, 32, 32});
  for (int64_t i = 0; i < xq.numel(); ++i) xq.data()[i] = UnitFromPixel(q[i]);
  Reference ref = RefOf(xq, kFmnistCnnFeatureNetwork);
  const std::string stats = dir + "/ref.pgt";
  ASSERT_TRUE(SaveFeatureStats(stats, ref.stats).ok());
  ASSERT_TRUE(SaveReferenceFeatures(ReferenceFeaturesPath(stats),
                                    kFmnistCnnFeatureNetwork, ref.features)
                  .ok());
  const std::string bin = "worker/eval/paragan_eval --threads=1";
  const std::string json = dir + "/out.json";
  std::string out;
  int rc = RunCommand(bin + " --samples=" + npy + " --reference=" + stats +
                          " --kid_subsets=3 --json=" + json,
                      &out);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("samples 200"), std::string::npos) << out;
  const size_t at = out.find("FID(fmnist-cnn) ");
  ASSERT_NE(at, std::string::npos) << out;
  EXPECT_NEAR(std::atof(out.c_str() + at + 16), 0.0, 1e-4) << out;
  EXPECT_NE(out.find("KID(fmnist-cnn) "), std::string::npos) << out;
  EXPECT_NE(out.find("IS(fmnist-cnn) "), std::string::npos) << out;
  auto j = ReadFileToString(json);
  ASSERT_TRUE(j.ok());
  EXPECT_NE(j->find("\"fid\": "), std::string::npos);
  EXPECT_NE(j->find("\"kid_mean\": "), std::string::npos);

  // Missing samples file.
  rc = RunCommand(bin + " --samples=" + dir + "/nope.npy --reference=" + stats,
                  &out);
  EXPECT_EQ(rc, 1);
  EXPECT_NE(out.find("nope.npy"), std::string::npos) << out;
  // Wrong shape.
  std::vector<uint8_t> small(200 * 784);
  ASSERT_TRUE(
      WriteNpy(dir + "/s28.npy", "|u1", {200, 28, 28}, small.data()).ok());
  rc = RunCommand(bin + " --samples=" + dir + "/s28.npy --reference=" + stats,
                  &out);
  EXPECT_EQ(rc, 1);
  EXPECT_NE(out.find("got [200, 1, 28, 28]"), std::string::npos) << out;
  // Too few samples.
  ASSERT_TRUE(WriteNpy(dir + "/few.npy", "|u1", {50, 32, 32}, q.data()).ok());
  rc = RunCommand(bin + " --samples=" + dir + "/few.npy --reference=" + stats,
                  &out);
  EXPECT_EQ(rc, 1);
  EXPECT_NE(out.find("at least 129"), std::string::npos) << out;
  // Stats of another network.
  FeatureStats other = ref.stats;
  other.network = "inception_v3_pool3";
  ASSERT_TRUE(SaveFeatureStats(dir + "/other.pgt", other).ok());
  rc = RunCommand(
      bin + " --samples=" + npy + " --reference=" + dir + "/other.pgt", &out);
  EXPECT_EQ(rc, 1);
  EXPECT_NE(out.find("inception_v3_pool3"), std::string::npos) << out;
  // An image folder: the same 200 images as PNGs, so FID ~ 0 again.
  const std::string folder = dir + "/pngs";
  std::filesystem::create_directories(folder);
  for (int i = 0; i < 200; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "/%04d.png", i);
    ASSERT_TRUE(WritePng(folder + name, q.data() + i * 1024, 32, 32, 1).ok());
  }
  rc = RunCommand(bin + " --images=" + folder + " --reference=" + stats +
                      " --kid_subsets=3",
                  &out);
  ASSERT_EQ(rc, 0) << out;
  const size_t at2 = out.find("FID(fmnist-cnn) ");
  ASSERT_NE(at2, std::string::npos) << out;
  EXPECT_NEAR(std::atof(out.c_str() + at2 + 16), 0.0, 1e-4) << out;
  // An unknown feature network.
  rc = RunCommand(bin + " --samples=" + npy + " --reference=" + stats +
                      " --network=vgg",
                  &out);
  EXPECT_EQ(rc, 2) << out;
  EXPECT_NE(out.find("fmnist-cnn"), std::string::npos) << out;
  // Bad flags.
  rc = RunCommand(bin + " --reference=" + stats, &out);
  EXPECT_EQ(rc, 2) << out;
  rc = RunCommand(bin + " --samples=" + npy + " --images=" + folder +
                      " --reference=" + stats,
                  &out);
  EXPECT_EQ(rc, 2) << out;
}

// A checkpoint's EMA generator, scored through the binary and the library:
// the same samples, so the same FID, and a seed changes the samples.
TEST_F(WithNet, CheckpointScoredLikeItsSamples) {
  const std::string dir = TmpDir();
  TrainerConfig tc = DefaultTrainerConfig("dcgan32");
  tc.batch_size = 8;
  tc.seed = 3;
  std::unique_ptr<Backend> b = MakeCpuBackend(1);
  auto trainer = GanTrainer::Create(tc, b.get());
  ASSERT_TRUE(trainer.ok()) << trainer.status();
  auto state = (*trainer)->SaveState();
  ASSERT_TRUE(state.ok());
  const std::string ckpt = dir + "/checkpoint.pgt";
  ASSERT_TRUE(WriteCheckpoint(ckpt, std::move(*state)).ok());
  auto a = SamplesFromCheckpoint(ckpt, 150, 1, "cpu", 1);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_EQ(a->shape(), (Shape{150, 1, 32, 32}));
  auto again = SamplesFromCheckpoint(ckpt, 150, 1, "cpu", 1);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(std::memcmp(a->data(), again->data(), a->numel() * 4), 0);
  auto other = SamplesFromCheckpoint(ckpt, 150, 2, "cpu", 1);
  ASSERT_TRUE(other.ok());
  EXPECT_NE(std::memcmp(a->data(), other->data(), a->numel() * 4), 0);
  // Reference = exactly the seed-1 samples: the binary must find FID ~ 0.
  Reference ref = RefOf(*a, kFmnistCnnFeatureNetwork);
  const std::string stats = dir + "/ckpt_ref.pgt";
  ASSERT_TRUE(SaveFeatureStats(stats, ref.stats).ok());
  std::string out;
  const int rc =
      RunCommand("worker/eval/paragan_eval --threads=1 --checkpoint=" + ckpt +
                     " --num_samples=150 --seed=1 --reference=" + stats,
                 &out);
  ASSERT_EQ(rc, 0) << out;
  const size_t at = out.find("FID(fmnist-cnn) ");
  ASSERT_NE(at, std::string::npos) << out;
  EXPECT_NEAR(std::atof(out.c_str() + at + 16), 0.0, 1e-4) << out;
  EXPECT_FALSE(SamplesFromCheckpoint(dir + "/none.pgt", 10, 1, "cpu", 1).ok());
}

}  // namespace
}  // namespace paragan::eval

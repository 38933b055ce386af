// fmnist-cnn: gradients (finite differences), that training lowers the loss,
// batching, input validation and the weights file.

#include "worker/eval/fmnist_cnn.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "common/rng.h"
#include "common/tensor_io.h"
#include "dataloader/datasets/dataset.h"
#include "gtest/gtest.h"
#include "worker/engine/optimizer.h"

namespace paragan::eval {
namespace {

Tensor RandomImages(int64_t n, Rng* rng) {
  Tensor t = Tensor::Host({n, 1, 32, 32});
  for (int64_t i = 0; i < t.numel(); ++i)
    t.data()[i] = std::max(-1.0f, std::min(1.0f, 0.6f * rng->Normal()));
  return t;
}

std::string TempPath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return std::string(dir ? dir : "/tmp") + "/" + name;
}

TEST(SoftmaxCrossEntropy, GradientMatchesFiniteDifferences) {
  Rng rng(3);
  const int n = 5, k = 10;
  std::vector<float> z(n * k);
  for (float& v : z) v = 3.0f * rng.Normal();
  std::vector<int> labels = {0, 3, 9, 3, 7};
  std::vector<float> dz;
  const double loss = SoftmaxCrossEntropy(z, k, labels, &dz);
  EXPECT_GT(loss, 0.0);
  double max_err = 0;
  for (int i = 0; i < n * k; ++i) {
    const float h = 1e-3f;
    std::vector<float> zp = z, zm = z;
    zp[i] += h;
    zm[i] -= h;
    const double num = (SoftmaxCrossEntropy(zp, k, labels, nullptr) -
                        SoftmaxCrossEntropy(zm, k, labels, nullptr)) /
                       (double{zp[i]} - zm[i]);
    max_err = std::max(max_err, std::fabs(num - dz[i]));
    EXPECT_NEAR(num, dz[i], 1e-5 + 1e-3 * std::fabs(dz[i])) << "logit " << i;
  }
  std::printf("CE gradient: max |numeric - analytic| = %.2e\n", max_err);
  // Large logits: log-sum-exp keeps it finite; uniform logits give log(k).
  std::vector<float> big(k, 0.0f);
  big[2] = 1000.0f;
  EXPECT_NEAR(SoftmaxCrossEntropy(big, k, {2}, nullptr), 0.0, 1e-12);
  EXPECT_NEAR(SoftmaxCrossEntropy(big, k, {1}, nullptr), 1000.0, 1e-9);
  std::vector<float> flat(k, 0.5f);
  EXPECT_NEAR(SoftmaxCrossEntropy(flat, k, {4}, nullptr), std::log(10.0),
              1e-12);
}

// L = sum(r * logits) on a batch of 2; every parameter tensor and the input
// sampled. ReLU kinks crossed by the step can spoil single coordinates, so
// at least 95% must agree (a wrong backward fails nearly all of them).
TEST(FmnistCnn, NetworkGradientMatchesFiniteDifferences) {
  std::unique_ptr<Backend> b = MakeCpuBackend(2);
  FmnistCnn net(b.get());
  net.Init(11);
  Rng rng(5);
  Tensor x = RandomImages(2, &rng);
  const Mode mode{true, false, true, true};
  Tensor r = Tensor::Host({2, kFmnistCnnClasses});
  for (int64_t i = 0; i < r.numel(); ++i) r.data()[i] = rng.Normal();
  auto loss = [&]() {
    Tensor y = net.Forward(x, mode);
    double s = 0;
    for (int64_t i = 0; i < y.numel(); ++i) s += double{y.data()[i]} * r.data()[i];
    return s;
  };
  loss();
  net.params()->ZeroGrads();
  Tensor dx = net.Backward(r);
  ASSERT_FALSE(dx.empty());
  struct Target {
    std::string name;
    Tensor value, grad;
  };
  std::vector<Target> targets{{"input", x, b->Clone(dx)}};
  for (Param& p : net.params()->params())
    targets.push_back({p.name, p.value, b->Clone(p.grad)});
  int checked = 0, bad = 0;
  double max_rel = 0;
  // A small step: fewer ReLU kinks crossed; |L| ~ 1 keeps float32 rounding
  // (~1e-7 |L| / h) far below the tolerance.
  const double h = 1e-3;
  for (Target& t : targets) {
    for (int s = 0; s < 16; ++s) {
      const int64_t i = rng.Below(static_cast<uint32_t>(t.value.numel()));
      float* p = t.value.data() + i;
      const float orig = *p;
      *p = orig + h;
      const double lp = loss();
      *p = orig - h;
      const double lm = loss();
      *p = orig;
      const double num = (lp - lm) / (2 * h);
      const double ana = t.grad.data()[i];
      const double err = std::fabs(num - ana);
      ++checked;
      // A bias shifts a whole channel's pre-activations (every position of
      // both samples), so its step crosses ReLU kinks far more often: a
      // looser relative tolerance there.
      const bool bias = t.name.find(".bias") != std::string::npos;
      if (err > 1e-3 + (bias ? 0.25 : 2e-2) * std::fabs(ana)) {
        ++bad;
        std::printf("  %s[%lld]: numeric %.6f analytic %.6f\n", t.name.c_str(),
                    static_cast<long long>(i), num, ana);
      }
      if (std::fabs(ana) > 1e-2) max_rel = std::max(max_rel, err / std::fabs(ana));
    }
  }
  std::printf("network gradient: %d of %d coordinates off, max rel err %.2e\n",
              bad, checked, max_rel);
  EXPECT_LE(bad, checked / 20);
}

// A few hundred Adam steps on a small synthetic 10-class set: the loss must
// fall well below log(10) and accuracy rise far above chance.
TEST(FmnistCnn, TrainingLowersTheLoss) {
  std::unique_ptr<Backend> b = MakeCpuBackend(2);
  FmnistCnn net(b.get());
  net.Init(1);
  std::unique_ptr<Dataset> ds = MakeSyntheticDataset(512, 1, 32, 10, 9);
  const int64_t n = ds->info().size;
  Tensor images = Tensor::Host({n, 1, 32, 32});
  std::vector<int> labels(n);
  for (int64_t i = 0; i < n; ++i)
    ds->Get(i, images.data() + i * 1024, &labels[i]);
  AdamConfig config;
  config.lr = 2e-3f;
  config.beta1 = 0.9f;
  Adam adam(net.params(), config);
  const int batch = 32, steps = 120;
  const Mode mode{true, false, true, false};
  Rng rng(2);
  std::vector<double> losses;
  Tensor xb = Tensor::Host({batch, 1, 32, 32});
  std::vector<int> yb(batch);
  std::vector<float> dl;
  for (int step = 0; step < steps; ++step) {
    for (int j = 0; j < batch; ++j) {
      const int64_t idx = rng.Below(static_cast<uint32_t>(n));
      std::copy(images.data() + idx * 1024, images.data() + (idx + 1) * 1024,
                xb.data() + j * 1024);
      yb[j] = labels[idx];
    }
    Tensor logits = net.Forward(xb, mode);
    losses.push_back(
        SoftmaxCrossEntropy(logits.ToVector(), kFmnistCnnClasses, yb, &dl));
    net.params()->ZeroGrads();
    net.Backward(Tensor::HostFrom(logits.shape(), dl));
    adam.Step();
  }
  auto mean = [&](int from, int to) {
    double s = 0;
    for (int i = from; i < to; ++i) s += losses[i];
    return s / (to - from);
  };
  const double first = mean(0, 10), last = mean(steps - 20, steps);
  absl::StatusOr<Tensor> logits = net.Logits(images);
  ASSERT_TRUE(logits.ok()) << logits.status();
  const std::vector<int> pred = Argmax(*logits);
  int correct = 0;
  for (int64_t i = 0; i < n; ++i) correct += pred[i] == labels[i];
  std::printf("loss: first 10 steps %.4f, last 20 steps %.4f; accuracy %.3f\n",
              first, last, static_cast<double>(correct) / n);
  EXPECT_GT(first, 1.5);
  EXPECT_LT(last, 0.3 * first);
  EXPECT_GT(correct, n / 2);
}

TEST(FmnistCnn, FeaturesAreBatchIndependentAndValidated) {
  std::unique_ptr<Backend> b = MakeCpuBackend(2);
  FmnistCnn net(b.get());
  net.Init(4);
  Rng rng(8);
  Tensor x = RandomImages(7, &rng);
  absl::StatusOr<FeatureOutputs> all = net.Evaluate(x, 500);
  absl::StatusOr<FeatureOutputs> small = net.Evaluate(x, 3);
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_TRUE(small.ok()) << small.status();
  ASSERT_EQ(all->features.shape(), (Shape{7, kFmnistCnnFeatureDim}));
  ASSERT_EQ(all->logits.shape(), (Shape{7, kFmnistCnnClasses}));
  for (int64_t i = 0; i < all->features.numel(); ++i)
    EXPECT_NEAR(all->features.data()[i], small->features.data()[i], 1e-5);
  for (int64_t i = 0; i < all->logits.numel(); ++i)
    EXPECT_NEAR(all->logits.data()[i], small->logits.data()[i], 1e-5);
  // [N, 32, 32] is accepted too.
  absl::StatusOr<Tensor> f3 = net.Features(x.Reshape({7, 32, 32}));
  ASSERT_TRUE(f3.ok()) << f3.status();

  absl::StatusOr<Tensor> wrong_shape = net.Features(Tensor::Host({2, 3, 32, 32}));
  EXPECT_FALSE(wrong_shape.ok());
  EXPECT_NE(wrong_shape.status().message().find("[2, 3, 32, 32]"),
            std::string::npos)
      << wrong_shape.status();
  Tensor bytes = b->Clone(x);
  bytes.data()[1030] = 255.0f;  // image 1, pixel 6: a [0, 255] image
  absl::StatusOr<Tensor> out_of_range = net.Features(bytes);
  EXPECT_FALSE(out_of_range.ok());
  EXPECT_NE(out_of_range.status().message().find("image 1 value 6"),
            std::string::npos)
      << out_of_range.status();
}

class WeightsFile : public ::testing::Test {
 protected:
  WeightsFile() : b_(MakeCpuBackend(2)) {}
  // The saved file's arrays, for making wrong variants of it.
  std::vector<NamedArray> SavedArrays(FmnistCnn* net, const std::string& path) {
    FmnistCnnInfo info;
    info.test_accuracy = 0.875;
    info.epochs = 3;
    info.steps = 1404;
    info.seed = 1;
    EXPECT_TRUE(net->Save(path, info).ok());
    absl::StatusOr<std::vector<NamedArray>> arrays = ReadTensorFile(path);
    EXPECT_TRUE(arrays.ok()) << arrays.status();
    return *arrays;
  }
  std::unique_ptr<Backend> b_;
};

TEST_F(WeightsFile, RoundTrip) {
  FmnistCnn a(b_.get()), c(b_.get());
  a.Init(1);
  c.Init(2);
  const std::string path = TempPath("fmnist_roundtrip.pgt");
  SavedArrays(&a, path);
  absl::StatusOr<FmnistCnnInfo> info = c.Load(path);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_NEAR(info->test_accuracy, 0.875, 1e-7);
  EXPECT_EQ(info->epochs, 3);
  EXPECT_EQ(info->steps, 1404);
  EXPECT_EQ(info->seed, 1);
  Rng rng(1);
  Tensor x = RandomImages(4, &rng);
  absl::StatusOr<Tensor> fa = a.Features(x), fc = c.Features(x);
  ASSERT_TRUE(fa.ok() && fc.ok());
  EXPECT_EQ(fa->ToVector(), fc->ToVector());
}

TEST_F(WeightsFile, RefusesWrongFiles) {
  FmnistCnn a(b_.get()), c(b_.get());
  a.Init(1);
  c.Init(2);
  const std::string path = TempPath("fmnist_good.pgt");
  const std::vector<NamedArray> good = SavedArrays(&a, path);
  Rng rng(1);
  Tensor x = RandomImages(2, &rng);
  const std::vector<float> before = c.Features(x)->ToVector();

  auto expect_refused = [&](std::vector<NamedArray> arrays,
                            const std::string& what) {
    const std::string bad = TempPath("fmnist_bad.pgt");
    ASSERT_TRUE(WriteTensorFile(bad, arrays).ok());
    absl::StatusOr<FmnistCnnInfo> r = c.Load(bad);
    ASSERT_FALSE(r.ok()) << what;
    EXPECT_NE(r.status().message().find(what), std::string::npos)
        << r.status();
    EXPECT_EQ(c.Features(x)->ToVector(), before) << "weights changed";
  };
  auto replace = [&](std::vector<NamedArray> arrays, NamedArray a) {
    for (NamedArray& x : arrays)
      if (x.name == a.name) x = a;
    return arrays;
  };
  const std::string other = "dcgan32";
  expect_refused(replace(good, *MakeUint8Array("meta/network", {7},
                                               {other.begin(), other.end()})),
                 "network is 'dcgan32', expected 'fmnist-cnn'");
  expect_refused(replace(good, *MakeInt64Array("meta/version", {1}, {2})),
                 "version is 2, expected 1");
  std::vector<NamedArray> missing;
  for (const NamedArray& x : good)
    if (x.name != "conv2.weight") missing.push_back(x);
  expect_refused(missing, "missing tensor 'conv2.weight'");
  expect_refused(replace(good, *MakeFloatArray("fc2.bias", {11},
                                               std::vector<float>(11, 0.0f))),
                 "tensor 'fc2.bias' has shape [11], expected [10]");
  std::vector<NamedArray> extra = good;
  extra.push_back(*MakeFloatArray("conv4.weight", {1}, {0.0f}));
  expect_refused(extra, "unexpected tensor 'conv4.weight'");
  std::vector<NamedArray> nan = replace(
      good, *MakeFloatArray("fc2.bias", {10}, std::vector<float>(10, NAN)));
  expect_refused(nan, "tensor 'fc2.bias' element 0 is not finite");
  // A file of something else entirely (no signature).
  expect_refused({*MakeFloatArray("G.fc.weight", {2}, {1.0f, 2.0f})},
                 "no 'meta/network' tensor");
}

// The committed weights (worker/eval/fmnist_cnn.pgt), when present, load.
TEST(CommittedWeights, LoadAndCarryTheirAccuracy) {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* ws = std::getenv("TEST_WORKSPACE");
  if (!srcdir || !ws) GTEST_SKIP() << "not under bazel test";
  const std::string path =
      std::string(srcdir) + "/" + ws + "/worker/eval/fmnist_cnn.pgt";
  if (!std::ifstream(path).good()) GTEST_SKIP() << "no " << path;
  std::unique_ptr<Backend> b = MakeCpuBackend(2);
  FmnistCnn net(b.get());
  absl::StatusOr<FmnistCnnInfo> info = net.Load(path);
  ASSERT_TRUE(info.ok()) << info.status();
  std::printf("committed weights: test accuracy %.4f, %lld epochs\n",
              info->test_accuracy, static_cast<long long>(info->epochs));
  EXPECT_GT(info->test_accuracy, 0.8);
}

}  // namespace
}  // namespace paragan::eval

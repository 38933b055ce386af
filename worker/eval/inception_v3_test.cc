// inception-v3 against PyTorch: pytorch-fid's FID InceptionV3 re-implemented
// on torchvision's blocks (tests/eval/make_inception_fixture.py), on fixed
// random weights that InceptionV3RandomWeights regenerates exactly, and the
// loader's refusals.

#include "worker/eval/inception_v3.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/check.h"
#include "common/tensor_io.h"
#include "gtest/gtest.h"
#include "worker/engine/backend.h"
#include "worker/eval/feature_networks.h"

#ifdef PARAGAN_INCEPTION_CUDA_TEST
#include "worker/engine/gpu_test_util.h"
#endif

namespace paragan::eval {
namespace {

const std::map<std::string, NamedArray>& Fixture() {
  static const auto* fixture = [] {
    auto* m = new std::map<std::string, NamedArray>;
    const char* src = std::getenv("TEST_SRCDIR");
    const std::string path = std::string(src ? src : ".") +
                             "/paragan/tests/eval/inception_fixture.pgt";
    auto arrays = ReadTensorFile(path);
    PG_CHECK_OK(arrays.status());
    for (NamedArray& a : *arrays) (*m)[a.name] = std::move(a);
    return m;
  }();
  return *fixture;
}

Tensor FixtureTensor(const std::string& name) {
  auto it = Fixture().find(name);
  PG_CHECK(it != Fixture().end()) << "fixture lacks " << name;
  return Tensor::HostFrom(it->second.dims, *ToFloatVector(it->second));
}

uint64_t FixtureSeed() {
  return static_cast<uint64_t>((*ToInt64Vector(Fixture().at("meta/seed")))[0]);
}

const std::vector<NamedArray>& RandomWeights() {
  static const auto* w =
      new std::vector<NamedArray>(InceptionV3RandomWeights(FixtureSeed()));
  return *w;
}

struct Diff {
  double max_abs = 0, ref_max = 0;
};
Diff Compare(const Tensor& got, const Tensor& want) {
  PG_CHECK(got.shape() == want.shape())
      << ShapeToString(got.shape()) << " vs " << ShapeToString(want.shape());
  Diff d;
  for (int64_t i = 0; i < got.numel(); ++i) {
    d.max_abs = std::max(
        d.max_abs, std::abs(double{got.data()[i]} - double{want.data()[i]}));
    d.ref_max = std::max(d.ref_max, std::abs(double{want.data()[i]}));
  }
  return d;
}

// Tolerance, relative to the largest reference value: PyTorch's own float32
// forward differs from its float64 one by ~2e-7 of that scale (the fixture
// keeps both); ours folds BatchNorm into the weights and sums in another
// order (oneDNN, cuDNN), which moves float32 results by a few such steps over
// 94 layers. 1e-5 is ~50x PyTorch's own float32 error and still far below
// anything FID could notice (features are ~1-60 here).
constexpr double kRelTol = 1e-5;

void CheckAgainstPyTorch(Backend* backend, const char* label) {
  InceptionV3 net(backend);
  ASSERT_TRUE(net.LoadArrays(RandomWeights(), "random weights").ok());
  const Tensor inputs = FixtureTensor("inputs");
  const auto t0 = std::chrono::steady_clock::now();
  absl::StatusOr<InceptionOutputs> out = net.Outputs(inputs, 3);
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
          .count();
  ASSERT_TRUE(out.ok()) << out.status();
  const Diff pool = Compare(out->pool3, FixtureTensor("pool3"));
  const Diff logits = Compare(out->logits, FixtureTensor("logits"));
  const Diff unbiased =
      Compare(out->logits_unbiased, FixtureTensor("logits_unbiased"));
  const Diff torch_pool =
      Compare(FixtureTensor("pool3_f32"), FixtureTensor("pool3"));
  const Diff torch_logits =
      Compare(FixtureTensor("logits_f32"), FixtureTensor("logits"));
  const Diff vs_f32 = Compare(out->pool3, FixtureTensor("pool3_f32"));
  std::printf(
      "[%s] vs PyTorch float64: pool3 max abs diff %.3g (max |pool3| %.3g), "
      "logits %.3g (max %.3g), logits_unbiased %.3g; PyTorch float32 itself: "
      "pool3 %.3g, logits %.3g; ours vs PyTorch float32: pool3 %.3g; %lld "
      "images in %.2f s (%.2f s/image, first "
      "call includes setup)\n",
      label, pool.max_abs, pool.ref_max, logits.max_abs, logits.ref_max,
      unbiased.max_abs, torch_pool.max_abs, torch_logits.max_abs,
      vs_f32.max_abs, static_cast<long long>(inputs.dim(0)), secs,
      secs / inputs.dim(0));
  EXPECT_LE(pool.max_abs, kRelTol * pool.ref_max);
  EXPECT_LE(logits.max_abs, kRelTol * logits.ref_max);
  EXPECT_LE(unbiased.max_abs, kRelTol * unbiased.ref_max);
  // Not vacuous: the outputs are non-trivial.
  EXPECT_GT(pool.ref_max, 1.0);

  // Evaluate: features = pool3, logits = the unbiased logits (IS).
  absl::StatusOr<FeatureOutputs> ev = net.Evaluate(inputs, 2);
  ASSERT_TRUE(ev.ok()) << ev.status();
  EXPECT_LE(Compare(ev->features, out->pool3).max_abs,
            kRelTol * pool.ref_max);  // batch 2 + 1 vs 3
  EXPECT_LE(Compare(ev->logits, out->logits_unbiased).max_abs,
            kRelTol * unbiased.ref_max);
}

#ifndef PARAGAN_INCEPTION_CUDA_TEST

TEST(InceptionV3, MatchesPyTorchOnRandomWeights) {
  auto backend = MakeCpuBackend(2, CpuConvLayout::kBlocked);
  CheckAgainstPyTorch(backend.get(), "cpu");
}

TEST(InceptionV3, GrayscaleIsRepeatedToThreeChannels) {
  auto backend = MakeCpuBackend(2, CpuConvLayout::kBlocked);
  InceptionV3 net(backend.get());
  ASSERT_TRUE(net.LoadArrays(RandomWeights(), "random weights").ok());
  const Tensor rgb_fixture = FixtureTensor("inputs");
  // Channel 0 of image 1 (the smooth one), 28 x 36.
  const int64_t h = 28, w = 36;
  Tensor gray = Tensor::Host({1, 1, h, w});
  Tensor gray3 = Tensor::Host({1, h, w});
  Tensor rgb = Tensor::Host({1, 3, h, w});
  for (int64_t i = 0; i < h * w; ++i) {
    const float v = rgb_fixture.data()[1 * 3 * h * w + i];
    gray.data()[i] = gray3.data()[i] = v;
    for (int c = 0; c < 3; ++c) rgb.data()[c * h * w + i] = v;
  }
  auto a = net.Evaluate(gray, 8);
  auto b = net.Evaluate(rgb, 8);
  auto c = net.Evaluate(gray3, 8);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(Compare(a->features, b->features).max_abs, 0.0);
  EXPECT_EQ(Compare(a->logits, b->logits).max_abs, 0.0);
  EXPECT_EQ(Compare(c->features, b->features).max_abs, 0.0);
}

TEST(InceptionV3, RefusesInputsItCannotScore) {
  auto backend = MakeCpuBackend(1);
  InceptionV3 net(backend.get());
  EXPECT_FALSE(net.Evaluate(Tensor::Host({1, 3, 8, 8}), 1).ok());  // no weights
  ASSERT_TRUE(net.LoadArrays(RandomWeights(), "random weights").ok());
  EXPECT_TRUE(net.CheckInput({5, 3, 32, 32}).ok());
  EXPECT_TRUE(net.CheckInput({5, 1, 28, 28}).ok());
  EXPECT_TRUE(net.CheckInput({5, 28, 28}).ok());
  EXPECT_TRUE(net.CheckInput({5, 3, 512, 300}).ok());
  for (const Shape& bad : std::vector<Shape>{
           {5, 2, 32, 32}, {5, 4, 32, 32}, {32, 32}, {1, 3, 0, 4}, {}}) {
    absl::Status s = net.CheckInput(bad);
    EXPECT_FALSE(s.ok()) << ShapeToString(bad);
    EXPECT_NE(s.message().find("1- or 3-channel"), std::string::npos) << s;
  }
  Tensor img = Tensor::Host({1, 3, 4, 4});
  img.data()[7] = 255.0f;
  absl::StatusOr<FeatureOutputs> r = net.Evaluate(img, 1);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("[-1, 1]"), std::string::npos);
}

// A weights file with one thing wrong is refused, naming it.
TEST(InceptionV3, LoaderChecksEveryTensorsNameAndShape) {
  auto backend = MakeCpuBackend(1);
  auto refused = [&](std::vector<NamedArray> arrays, const std::string& want) {
    InceptionV3 net(backend.get());
    absl::Status s = net.LoadArrays(arrays, "bad.pgt");
    EXPECT_FALSE(s.ok()) << want;
    EXPECT_FALSE(net.loaded());
    EXPECT_NE(s.message().find(want), std::string::npos)
        << "want '" << want << "' in: " << s.message();
    EXPECT_NE(s.message().find("bad.pgt"), std::string::npos) << s;
  };
  auto without = [&](const std::string& name) {
    std::vector<NamedArray> a;
    for (const NamedArray& x : RandomWeights())
      if (x.name != name) a.push_back(x);
    return a;
  };
  auto find = [](std::vector<NamedArray>* a, const std::string& name) {
    for (NamedArray& x : *a)
      if (x.name == name) return &x;
    PG_CHECK(false) << name;
    return static_cast<NamedArray*>(nullptr);
  };
  refused(without("Mixed_6c.branch7x7dbl_3.bn.running_var"),
          "missing tensor 'Mixed_6c.branch7x7dbl_3.bn.running_var'");
  refused(without("fc.bias"), "missing tensor 'fc.bias'");
  {
    std::vector<NamedArray> a = RandomWeights();
    // 7x1 where 1x7 belongs (same element count).
    find(&a, "Mixed_6b.branch7x7_2.conv.weight")->dims = {128, 128, 7, 1};
    refused(a,
            "tensor 'Mixed_6b.branch7x7_2.conv.weight' has shape [128, 128, "
            "7, 1], expected [128, 128, 1, 7]");
  }
  {
    std::vector<NamedArray> a = RandomWeights();
    a.push_back(*MakeFloatArray("AuxLogits.fc.weight", {2}, {1, 2}));
    refused(a, "unexpected tensor 'AuxLogits.fc.weight'");
  }
  {
    std::vector<NamedArray> a = RandomWeights();
    NamedArray* t = find(&a, "Conv2d_1a_3x3.bn.bias");
    std::vector<float> v = *ToFloatVector(*t);
    v[5] = std::nanf("");
    *t = *MakeFloatArray(t->name, t->dims, v);
    refused(a, "tensor 'Conv2d_1a_3x3.bn.bias' element 5 is not finite");
  }
  {
    std::vector<NamedArray> a = RandomWeights();
    NamedArray* t = find(&a, "fc.bias");
    *t = *MakeInt64Array("fc.bias", {kInceptionV3Classes},
                         std::vector<int64_t>(kInceptionV3Classes, 0));
    refused(a, "tensor 'fc.bias' is int64, expected float32");
  }
  {
    std::vector<NamedArray> a = RandomWeights();
    *find(&a, "meta/network") =
        *MakeUint8Array("meta/network", {10},
                        std::vector<uint8_t>({'f', 'm', 'n', 'i', 's', 't', '-',
                                              'c', 'n', 'n'}));
    refused(a, "network is 'fmnist-cnn', expected 'inception-v3'");
  }
  refused(without("meta/network"), "no uint8 text 'meta/network'");
  // The names and shapes are the converter's table (472 tensors, 23.9M
  // values: tools/convert_pytorch_fid_weights.py's EXPECTED_SHAPES).
  int64_t values = 0;
  for (const InceptionTensorSpec& s : InceptionV3TensorSpecs())
    values += NumElements(s.shape);
  EXPECT_EQ(InceptionV3TensorSpecs().size(), 472u);
  EXPECT_EQ(values, 23885392);
}

TEST(InceptionV3, OpenedByNameFromAFile) {
  auto backend = MakeCpuBackend(1);
  absl::StatusOr<std::unique_ptr<FeatureNetwork>> none =
      OpenFeatureNetwork("inception-v3", "", backend.get());
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("--weights"), std::string::npos);
  EXPECT_NE(
      none.status().message().find("tools/convert_pytorch_fid_weights.py"),
      std::string::npos)
      << none.status();
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string path = std::string(tmp ? tmp : "/tmp") + "/inception.pgt";
  absl::StatusOr<std::unique_ptr<FeatureNetwork>> missing =
      OpenFeatureNetwork("inception-v3", path, backend.get());
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("convert_pytorch_fid_weights"),
            std::string::npos)
      << missing.status();
  ASSERT_TRUE(WriteTensorFile(path, RandomWeights()).ok());
  absl::StatusOr<std::unique_ptr<FeatureNetwork>> net =
      OpenFeatureNetwork("inception-v3", path, backend.get());
  ASSERT_TRUE(net.ok()) << net.status();
  EXPECT_EQ((*net)->name(), "inception-v3");
  EXPECT_EQ((*net)->stats_network(), "inception-v3.random-seed1.pool3");
  EXPECT_EQ((*net)->feature_dim(), 2048);
  EXPECT_EQ((*net)->resolution(), 299);
  EXPECT_NE(FeatureNetworkNames().find("inception-v3"), std::string::npos);
  std::remove(path.c_str());
}

#else  // PARAGAN_INCEPTION_CUDA_TEST

TEST(InceptionV3Cuda, MatchesPyTorchOnRandomWeights) {
  PARAGAN_SKIP_WITHOUT_GPU();
  BackendOptions options;
  options.gpu_precision = GpuPrecision::kFp32;  // TF32 would not meet 1e-5
  options.gpu_layout = GpuConvLayout::kNchw;
  absl::StatusOr<std::unique_ptr<Backend>> backend =
      MakeBackend("cuda", options);
  ASSERT_TRUE(backend.ok()) << backend.status();
  CheckAgainstPyTorch(backend->get(), "cuda fp32");
}

#endif  // PARAGAN_INCEPTION_CUDA_TEST

}  // namespace
}  // namespace paragan::eval

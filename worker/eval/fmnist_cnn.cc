#include "worker/eval/fmnist_cnn.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "common/rng.h"
#include "common/tensor_io.h"

namespace paragan::eval {
namespace {

std::string ShapeText(const Shape& s) { return ShapeToString(s); }

}  // namespace

FmnistCnn::FmnistCnn(Backend* backend)
    : b_(backend),
      store_(backend),
      conv1_(&store_, "conv1", 1, 32, 3, 1, 1, true, false),
      conv2_(&store_, "conv2", 32, 64, 3, 1, 1, true, false),
      conv3_(&store_, "conv3", 64, 128, 3, 1, 1, true, false),
      relu1_(backend, Activation::kRelu),
      relu2_(backend, Activation::kRelu),
      relu3_(backend, Activation::kRelu),
      relu4_(backend, Activation::kRelu),
      pool1_(backend),
      pool2_(backend),
      pool3_(backend),
      fc1_(&store_, "fc1", 128 * 4 * 4, kFmnistCnnFeatureDim, true, false),
      fc2_(&store_, "fc2", kFmnistCnnFeatureDim, kFmnistCnnClasses, true,
           false) {}

void FmnistCnn::Init(uint64_t seed) {
  Rng rng(seed, 0x666d6e697374ULL);
  for (Param& p : store_.params()) {
    // Bias fan-in is the fan-in of its weight, as in PyTorch.
    int64_t fan_in = 0;
    const std::string base = p.name.substr(0, p.name.find('.'));
    const Param* w = store_.FindParam(base + ".weight");
    PG_CHECK(w != nullptr) << p.name;
    fan_in = w->value.numel() / w->value.dim(0);
    InitUniformFanIn(b_, &p, fan_in, &rng);
  }
}

Tensor FmnistCnn::Forward(const Tensor& x_in, const Mode& mode) {
  Tensor x = x_in;
  if (x.ndim() == 3) x = x.Reshape({x.dim(0), 1, x.dim(1), x.dim(2)});
  PG_CHECK(x.ndim() == 4 && x.dim(1) == 1 && x.dim(2) == kFmnistCnnResolution &&
           x.dim(3) == kFmnistCnnResolution)
      << "fmnist-cnn expects [N, 1, 32, 32], got " << ShapeText(x.shape());
  Tensor h = pool1_.Forward(relu1_.Forward(conv1_.Forward(x, mode)));
  Mode inner = mode;
  inner.input_grads = true;
  h = pool2_.Forward(relu2_.Forward(conv2_.Forward(h, inner)));
  h = pool3_.Forward(relu3_.Forward(conv3_.Forward(h, inner)));
  h = h.Reshape({h.dim(0), h.dim(1) * h.dim(2) * h.dim(3)});
  features_ = relu4_.Forward(fc1_.Forward(h, inner));
  return fc2_.Forward(features_, inner);
}

Tensor FmnistCnn::Backward(const Tensor& dlogits) {
  Tensor d = fc1_.Backward(relu4_.Backward(fc2_.Backward(dlogits)));
  d = d.Reshape({d.dim(0), 128, 4, 4});
  d = conv3_.Backward(relu3_.Backward(pool3_.Backward(d)));
  d = conv2_.Backward(relu2_.Backward(pool2_.Backward(d)));
  return conv1_.Backward(relu1_.Backward(pool1_.Backward(d)));
}

absl::Status FmnistCnn::CheckInput(const Shape& s) const {
  const int r = kFmnistCnnResolution;
  const bool ok4 = s.size() == 4 && s[1] == 1 && s[2] == r && s[3] == r;
  const bool ok3 = s.size() == 3 && s[1] == r && s[2] == r;
  if (ok3 || ok4) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "fmnist-cnn scores one-channel 32x32 images ([N, 1, 32, 32] or "
      "[N, 32, 32]) in [-1, 1], got ",
      ShapeText(s)));
}

absl::StatusOr<FeatureOutputs> FmnistCnn::Evaluate(const Tensor& images,
                                                   int batch_size) {
  if (images.device() != Device::kCpu || images.empty())
    return absl::InvalidArgumentError(
        "fmnist-cnn: images must be a non-empty host tensor");
  PG_RETURN_IF_ERROR(CheckInput(images.shape()));
  if (batch_size < 1)
    return absl::InvalidArgumentError("fmnist-cnn: batch_size must be >= 1");
  PG_RETURN_IF_ERROR(CheckUnitRange(images));
  const int64_t n = images.dim(0);
  constexpr int64_t kPixels = kFmnistCnnResolution * kFmnistCnnResolution;
  const float* src = images.data();
  FeatureOutputs out;
  out.features = Tensor::Host({n, kFmnistCnnFeatureDim});
  out.logits = Tensor::Host({n, kFmnistCnnClasses});
  const Mode mode{false, false, false, false};
  for (int64_t start = 0; start < n; start += batch_size) {
    const int64_t m = std::min<int64_t>(batch_size, n - start);
    Tensor x = b_->Alloc({m, 1, kFmnistCnnResolution, kFmnistCnnResolution});
    b_->Upload(src + start * kPixels, &x);
    Tensor logits = Forward(x, mode);
    b_->Download(features_, out.features.data() + start * kFmnistCnnFeatureDim);
    b_->Download(logits, out.logits.data() + start * kFmnistCnnClasses);
  }
  b_->Synchronize();
  return out;
}

absl::StatusOr<Tensor> FmnistCnn::Features(const Tensor& images,
                                           int batch_size) {
  absl::StatusOr<FeatureOutputs> out = Evaluate(images, batch_size);
  if (!out.ok()) return out.status();
  return out->features;
}

absl::StatusOr<Tensor> FmnistCnn::Logits(const Tensor& images, int batch_size) {
  absl::StatusOr<FeatureOutputs> out = Evaluate(images, batch_size);
  if (!out.ok()) return out.status();
  return out->logits;
}

absl::Status FmnistCnn::Save(const std::string& path,
                             const FmnistCnnInfo& info) {
  std::vector<NamedArray> arrays;
  const std::string name = kFmnistCnnName;
  auto add = [&](absl::StatusOr<NamedArray> a) -> absl::Status {
    if (!a.ok()) return a.status();
    arrays.push_back(*std::move(a));
    return absl::OkStatus();
  };
  absl::Status st = add(MakeUint8Array("meta/network",
                                       {static_cast<int64_t>(name.size())},
                                       {name.begin(), name.end()}));
  if (st.ok()) st = add(MakeInt64Array("meta/version", {1}, {kFmnistCnnVersion}));
  if (st.ok())
    st = add(MakeFloatArray("meta/test_accuracy", {1},
                            {static_cast<float>(info.test_accuracy)}));
  if (st.ok()) st = add(MakeInt64Array("meta/epochs", {1}, {info.epochs}));
  if (st.ok()) st = add(MakeInt64Array("meta/steps", {1}, {info.steps}));
  if (st.ok()) st = add(MakeInt64Array("meta/seed", {1}, {info.seed}));
  for (Param& p : store_.params()) {
    if (!st.ok()) break;
    Tensor host = b_->ToHost(p.value);
    st = add(MakeFloatArray(p.name, p.value.shape(), host.ToVector()));
  }
  if (!st.ok()) return st;
  return WriteTensorFile(path, arrays);
}

absl::StatusOr<FmnistCnnInfo> FmnistCnn::Load(const std::string& path) {
  absl::StatusOr<std::vector<NamedArray>> arrays = ReadTensorFile(path);
  if (!arrays.ok()) return arrays.status();
  return LoadArrays(*arrays, path);
}

absl::StatusOr<FmnistCnnInfo> FmnistCnn::LoadBytes(absl::string_view bytes,
                                                   const std::string& source) {
  absl::StatusOr<std::vector<NamedArray>> arrays = ParseTensors(bytes, source);
  if (!arrays.ok()) return arrays.status();
  return LoadArrays(*arrays, source);
}

absl::StatusOr<FmnistCnnInfo> FmnistCnn::LoadArrays(
    const std::vector<NamedArray>& arrays_in, const std::string& path) {
  const std::vector<NamedArray>* arrays = &arrays_in;
  auto refuse = [&](const std::string& why) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not fmnist-cnn v", kFmnistCnnVersion,
                     " weights: ", why));
  };
  const NamedArray* net = FindArray(*arrays, "meta/network");
  if (net == nullptr) return refuse("no 'meta/network' tensor");
  absl::StatusOr<std::vector<uint8_t>> net_text = ToUint8Vector(*net);
  if (!net_text.ok()) return refuse("'meta/network' is not uint8 text");
  const std::string got(net_text->begin(), net_text->end());
  if (got != kFmnistCnnName)
    return refuse(absl::StrCat("network is '", got, "', expected '",
                               kFmnistCnnName, "'"));
  const NamedArray* ver = FindArray(*arrays, "meta/version");
  if (ver == nullptr) return refuse("no 'meta/version' tensor");
  absl::StatusOr<std::vector<int64_t>> v = ToInt64Vector(*ver);
  if (!v.ok() || v->size() != 1) return refuse("'meta/version' is not int64 [1]");
  if ((*v)[0] != kFmnistCnnVersion)
    return refuse(absl::StrCat("version is ", (*v)[0], ", expected ",
                               kFmnistCnnVersion));
  FmnistCnnInfo info;
  auto int_meta = [&](const char* key, int64_t* dst) {
    const NamedArray* a = FindArray(*arrays, key);
    if (a == nullptr) return;
    absl::StatusOr<std::vector<int64_t>> x = ToInt64Vector(*a);
    if (x.ok() && x->size() == 1) *dst = (*x)[0];
  };
  int_meta("meta/epochs", &info.epochs);
  int_meta("meta/steps", &info.steps);
  int_meta("meta/seed", &info.seed);
  if (const NamedArray* a = FindArray(*arrays, "meta/test_accuracy")) {
    absl::StatusOr<std::vector<float>> x = ToFloatVector(*a);
    if (x.ok() && x->size() == 1) info.test_accuracy = (*x)[0];
  }
  // Validate everything before touching the weights.
  std::map<std::string, const NamedArray*> by_name;
  for (const NamedArray& a : *arrays)
    if (a.name.rfind("meta/", 0) != 0) by_name[a.name] = &a;
  std::vector<std::pair<Param*, std::vector<float>>> values;
  for (Param& p : store_.params()) {
    auto it = by_name.find(p.name);
    if (it == by_name.end())
      return refuse(absl::StrCat("missing tensor '", p.name, "'"));
    const NamedArray& a = *it->second;
    if (a.dims != p.value.shape())
      return refuse(absl::StrCat("tensor '", p.name, "' has shape ",
                                 ShapeText(a.dims), ", expected ",
                                 ShapeText(p.value.shape())));
    absl::StatusOr<std::vector<float>> x = ToFloatVector(a);
    if (!x.ok())
      return refuse(absl::StrCat("tensor '", p.name, "' is ",
                                 DTypeName(a.dtype), ", expected float32"));
    for (size_t i = 0; i < x->size(); ++i)
      if (!std::isfinite((*x)[i]))
        return refuse(absl::StrCat("tensor '", p.name, "' element ", i,
                                   " is not finite"));
    values.emplace_back(&p, *std::move(x));
    by_name.erase(it);
  }
  if (!by_name.empty())
    return refuse(absl::StrCat("unexpected tensor '", by_name.begin()->first,
                               "'"));
  for (auto& [p, x] : values) b_->Upload(x.data(), &p->value);
  return info;
}

double SoftmaxCrossEntropy(const std::vector<float>& logits, int classes,
                           const std::vector<int>& labels,
                           std::vector<float>* dlogits) {
  PG_CHECK(classes >= 1);
  const size_t n = labels.size();
  PG_CHECK(logits.size() == n * classes)
      << "SoftmaxCrossEntropy: " << logits.size() << " logits for " << n
      << " labels of " << classes << " classes";
  if (dlogits) dlogits->assign(logits.size(), 0.0f);
  double total = 0;
  std::vector<double> e(classes);
  for (size_t i = 0; i < n; ++i) {
    const float* z = logits.data() + i * classes;
    PG_CHECK(labels[i] >= 0 && labels[i] < classes)
        << "label " << labels[i] << " of row " << i;
    double mx = z[0];
    for (int k = 1; k < classes; ++k) mx = std::max(mx, double{z[k]});
    double sum = 0;
    for (int k = 0; k < classes; ++k) sum += e[k] = std::exp(z[k] - mx);
    const double lse = mx + std::log(sum);
    total += lse - z[labels[i]];
    if (dlogits) {
      float* d = dlogits->data() + i * classes;
      for (int k = 0; k < classes; ++k)
        d[k] = static_cast<float>((e[k] / sum - (k == labels[i] ? 1.0 : 0.0)) /
                                  static_cast<double>(n));
    }
  }
  return n == 0 ? 0.0 : total / static_cast<double>(n);
}

std::vector<int> Argmax(const Tensor& logits) {
  PG_CHECK(logits.ndim() == 2);
  const int64_t n = logits.dim(0), k = logits.dim(1);
  std::vector<int> out(n);
  for (int64_t i = 0; i < n; ++i) {
    const float* z = logits.data() + i * k;
    out[i] = static_cast<int>(std::max_element(z, z + k) - z);
  }
  return out;
}

}  // namespace paragan::eval

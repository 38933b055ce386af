#include "worker/eval/inception_v3.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/check.h"

namespace paragan::eval {
namespace {

struct ConvSpec {
  std::string name;
  int cin, cout, kh, kw, stride, ph, pw;
};

// Every BasicConv2d of torchvision's Inception3 (pytorch-fid's blocks have
// the same convolutions), in registration order.
const std::vector<ConvSpec>& ConvSpecs() {
  static const auto* specs = [] {
    auto* s = new std::vector<ConvSpec>;
    auto add = [&](const std::string& name, int cin, int cout, int kh, int kw,
                   int stride = 1, int ph = 0, int pw = 0) {
      s->push_back({name, cin, cout, kh, kw, stride, ph, pw});
    };
    add("Conv2d_1a_3x3", 3, 32, 3, 3, 2);
    add("Conv2d_2a_3x3", 32, 32, 3, 3);
    add("Conv2d_2b_3x3", 32, 64, 3, 3, 1, 1, 1);
    add("Conv2d_3b_1x1", 64, 80, 1, 1);
    add("Conv2d_4a_3x3", 80, 192, 3, 3);
    for (const auto& [name, cin, pool] :
         std::vector<std::tuple<std::string, int, int>>{
             {"Mixed_5b", 192, 32},
             {"Mixed_5c", 256, 64},
             {"Mixed_5d", 288, 64}}) {
      add(name + ".branch1x1", cin, 64, 1, 1);
      add(name + ".branch5x5_1", cin, 48, 1, 1);
      add(name + ".branch5x5_2", 48, 64, 5, 5, 1, 2, 2);
      add(name + ".branch3x3dbl_1", cin, 64, 1, 1);
      add(name + ".branch3x3dbl_2", 64, 96, 3, 3, 1, 1, 1);
      add(name + ".branch3x3dbl_3", 96, 96, 3, 3, 1, 1, 1);
      add(name + ".branch_pool", cin, pool, 1, 1);
    }
    add("Mixed_6a.branch3x3", 288, 384, 3, 3, 2);
    add("Mixed_6a.branch3x3dbl_1", 288, 64, 1, 1);
    add("Mixed_6a.branch3x3dbl_2", 64, 96, 3, 3, 1, 1, 1);
    add("Mixed_6a.branch3x3dbl_3", 96, 96, 3, 3, 2);
    for (const auto& [name, c7] :
         std::vector<std::pair<std::string, int>>{{"Mixed_6b", 128},
                                                  {"Mixed_6c", 160},
                                                  {"Mixed_6d", 160},
                                                  {"Mixed_6e", 192}}) {
      add(name + ".branch1x1", 768, 192, 1, 1);
      add(name + ".branch7x7_1", 768, c7, 1, 1);
      add(name + ".branch7x7_2", c7, c7, 1, 7, 1, 0, 3);
      add(name + ".branch7x7_3", c7, 192, 7, 1, 1, 3, 0);
      add(name + ".branch7x7dbl_1", 768, c7, 1, 1);
      add(name + ".branch7x7dbl_2", c7, c7, 7, 1, 1, 3, 0);
      add(name + ".branch7x7dbl_3", c7, c7, 1, 7, 1, 0, 3);
      add(name + ".branch7x7dbl_4", c7, c7, 7, 1, 1, 3, 0);
      add(name + ".branch7x7dbl_5", c7, 192, 1, 7, 1, 0, 3);
      add(name + ".branch_pool", 768, 192, 1, 1);
    }
    add("Mixed_7a.branch3x3_1", 768, 192, 1, 1);
    add("Mixed_7a.branch3x3_2", 192, 320, 3, 3, 2);
    add("Mixed_7a.branch7x7x3_1", 768, 192, 1, 1);
    add("Mixed_7a.branch7x7x3_2", 192, 192, 1, 7, 1, 0, 3);
    add("Mixed_7a.branch7x7x3_3", 192, 192, 7, 1, 1, 3, 0);
    add("Mixed_7a.branch7x7x3_4", 192, 192, 3, 3, 2);
    for (const auto& [name, cin] : std::vector<std::pair<std::string, int>>{
             {"Mixed_7b", 1280}, {"Mixed_7c", 2048}}) {
      add(name + ".branch1x1", cin, 320, 1, 1);
      add(name + ".branch3x3_1", cin, 384, 1, 1);
      add(name + ".branch3x3_2a", 384, 384, 1, 3, 1, 0, 1);
      add(name + ".branch3x3_2b", 384, 384, 3, 1, 1, 1, 0);
      add(name + ".branch3x3dbl_1", cin, 448, 1, 1);
      add(name + ".branch3x3dbl_2", 448, 384, 3, 3, 1, 1, 1);
      add(name + ".branch3x3dbl_3a", 384, 384, 1, 3, 1, 0, 1);
      add(name + ".branch3x3dbl_3b", 384, 384, 3, 1, 1, 1, 0);
      add(name + ".branch_pool", cin, 192, 1, 1);
    }
    return s;
  }();
  return *specs;
}

constexpr const char* kBnParts[] = {"weight", "bias", "running_mean",
                                    "running_var"};

absl::StatusOr<std::string> Text(const std::vector<NamedArray>& arrays,
                                 const char* key) {
  const NamedArray* a = FindArray(arrays, key);
  if (a == nullptr) return absl::NotFoundError(key);
  absl::StatusOr<std::vector<uint8_t>> v = ToUint8Vector(*a);
  if (!v.ok()) return v.status();
  return std::string(v->begin(), v->end());
}

// splitmix64 of the counter (see make_inception_fixture.py).
double UniformAt(uint64_t seed, uint64_t i) {
  uint64_t z = seed + (i + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<double>(z >> 11) * 0x1.0p-53;
}

std::pair<double, double> RandomRange(const InceptionTensorSpec& s) {
  const std::string& n = s.name;
  auto ends = [&](absl::string_view suffix) {
    return n.size() >= suffix.size() &&
           n.compare(n.size() - suffix.size(), suffix.size(), suffix.data()) ==
               0;
  };
  if (ends(".conv.weight")) {
    const double a = std::sqrt(
        6.0 / static_cast<double>(s.shape[1] * s.shape[2] * s.shape[3]));
    return {-a, a};
  }
  if (n == "fc.weight") {
    const double a = std::sqrt(3.0 / 2048);
    return {-a, a};
  }
  if (n == "fc.bias") return {-0.5, 0.5};
  if (ends(".bn.weight") || ends(".bn.running_var")) return {0.5, 1.5};
  return {-0.2, 0.2};  // .bn.bias, .bn.running_mean
}

}  // namespace

const std::vector<InceptionTensorSpec>& InceptionV3TensorSpecs() {
  static const auto* specs = [] {
    auto* s = new std::vector<InceptionTensorSpec>;
    for (const ConvSpec& c : ConvSpecs()) {
      s->push_back({c.name + ".conv.weight", {c.cout, c.cin, c.kh, c.kw}});
      for (const char* part : kBnParts)
        s->push_back({absl::StrCat(c.name, ".bn.", part), {c.cout}});
    }
    s->push_back({"fc.weight", {kInceptionV3Classes, kInceptionV3FeatureDim}});
    s->push_back({"fc.bias", {kInceptionV3Classes}});
    return s;
  }();
  return *specs;
}

std::vector<NamedArray> InceptionV3RandomWeights(uint64_t seed) {
  std::vector<NamedArray> out;
  auto text = [&](const char* key, const std::string& value) {
    out.push_back(
        *MakeUint8Array(key, {static_cast<int64_t>(value.size())},
                        std::vector<uint8_t>(value.begin(), value.end())));
  };
  text("meta/network", kInceptionV3Name);
  text("meta/weights", absl::StrCat("random-seed", seed));
  uint64_t offset = 0;
  for (const InceptionTensorSpec& s : InceptionV3TensorSpecs()) {
    const auto [lo, hi] = RandomRange(s);
    const int64_t n = NumElements(s.shape);
    std::vector<float> v(n);
    for (int64_t i = 0; i < n; ++i)
      v[i] = static_cast<float>(lo + (hi - lo) * UniformAt(seed, offset + i));
    offset += n;
    out.push_back(*MakeFloatArray(s.name, s.shape, v));
  }
  return out;
}

InceptionV3::InceptionV3(Backend* backend) : b_(backend) {}

absl::Status InceptionV3::Load(const std::string& path) {
  absl::StatusOr<std::vector<NamedArray>> arrays = ReadTensorFile(path);
  if (!arrays.ok())
    return absl::Status(
        arrays.status().code(),
        absl::StrCat("inception-v3 weights: ", arrays.status().message(), " (",
                     kInceptionV3WeightsHelp, ")"));
  return LoadArrays(*arrays, path);
}

absl::Status InceptionV3::LoadArrays(const std::vector<NamedArray>& arrays,
                                     const std::string& source) {
  auto refuse = [&](const std::string& why) {
    return absl::InvalidArgumentError(
        absl::StrCat(source,
                     ": not inception-v3 weights as "
                     "tools/convert_pytorch_fid_weights.py writes them: ",
                     why));
  };
  absl::StatusOr<std::string> network = Text(arrays, "meta/network");
  if (!network.ok()) return refuse("no uint8 text 'meta/network'");
  if (*network != kInceptionV3Name)
    return refuse(absl::StrCat("network is '", *network, "', expected '",
                               kInceptionV3Name, "'"));
  absl::StatusOr<std::string> tag = Text(arrays, "meta/weights");
  if (!tag.ok() || tag->empty()) return refuse("no uint8 text 'meta/weights'");
  for (char c : *tag)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ||
          c == '.'))
      return refuse(absl::StrCat("meta/weights '", *tag,
                                 "' is not a short name ([A-Za-z0-9._-])"));

  // Validate everything before touching the network.
  std::map<std::string, const NamedArray*> by_name;
  for (const NamedArray& a : arrays) {
    if (a.name.rfind("meta/", 0) == 0) continue;
    if (!by_name.emplace(a.name, &a).second)
      return refuse(absl::StrCat("tensor '", a.name, "' appears twice"));
  }
  std::map<std::string, std::vector<float>> values;
  for (const InceptionTensorSpec& s : InceptionV3TensorSpecs()) {
    auto it = by_name.find(s.name);
    if (it == by_name.end())
      return refuse(absl::StrCat("missing tensor '", s.name, "' (shape ",
                                 ShapeToString(s.shape), ")"));
    const NamedArray& a = *it->second;
    if (a.dims != s.shape)
      return refuse(absl::StrCat("tensor '", s.name, "' has shape ",
                                 ShapeToString(a.dims), ", expected ",
                                 ShapeToString(s.shape)));
    absl::StatusOr<std::vector<float>> v = ToFloatVector(a);
    if (!v.ok())
      return refuse(absl::StrCat("tensor '", s.name, "' is ",
                                 DTypeName(a.dtype), ", expected float32"));
    for (size_t i = 0; i < v->size(); ++i)
      if (!std::isfinite((*v)[i]))
        return refuse(absl::StrCat("tensor '", s.name, "' element ", i,
                                   " is not finite"));
    values.emplace(s.name, *std::move(v));
    by_name.erase(it);
  }
  if (!by_name.empty())
    return refuse(
        absl::StrCat("unexpected tensor '", by_name.begin()->first, "' (shape ",
                     ShapeToString(by_name.begin()->second->dims), ")"));
  for (const ConvSpec& c : ConvSpecs()) {
    const std::vector<float>& var = values[c.name + ".bn.running_var"];
    for (size_t i = 0; i < var.size(); ++i)
      if (var[i] < 0)
        return refuse(absl::StrCat("tensor '", c.name,
                                   ".bn.running_var' element ", i,
                                   " is negative"));
  }

  // Fold each BatchNorm into its conv (in double): with s = gamma /
  // sqrt(var + eps), w' = w * s per output channel, b' = beta - mean * s.
  std::map<std::string, Conv> convs;
  for (const ConvSpec& c : ConvSpecs()) {
    const std::vector<float>& w = values[c.name + ".conv.weight"];
    const std::vector<float>& gamma = values[c.name + ".bn.weight"];
    const std::vector<float>& beta = values[c.name + ".bn.bias"];
    const std::vector<float>& mean = values[c.name + ".bn.running_mean"];
    const std::vector<float>& var = values[c.name + ".bn.running_var"];
    const int64_t per_out = int64_t{c.cin} * c.kh * c.kw;
    Tensor hw = Tensor::Host({c.cout, c.cin, c.kh, c.kw});
    Tensor hb = Tensor::Host({c.cout});
    for (int o = 0; o < c.cout; ++o) {
      const double s = double{gamma[o]} /
                       std::sqrt(double{var[o]} + kInceptionV3BatchNormEps);
      for (int64_t k = 0; k < per_out; ++k)
        hw.data()[o * per_out + k] =
            static_cast<float>(double{w[o * per_out + k]} * s);
      hb.data()[o] = static_cast<float>(double{beta[o]} - double{mean[o]} * s);
    }
    Conv conv;
    conv.cin = c.cin;
    conv.cout = c.cout;
    conv.kh = c.kh;
    conv.kw = c.kw;
    conv.stride = c.stride;
    conv.ph = c.ph;
    conv.pw = c.pw;
    conv.w = b_->FromHost(hw);
    conv.b = b_->FromHost(hb);
    convs.emplace(c.name, std::move(conv));
  }
  fc_w_ = b_->FromHost(Tensor::HostFrom(
      {kInceptionV3Classes, kInceptionV3FeatureDim}, values["fc.weight"]));
  fc_b_ =
      b_->FromHost(Tensor::HostFrom({kInceptionV3Classes}, values["fc.bias"]));
  convs_ = std::move(convs);
  weights_tag_ = *tag;
  loaded_ = true;
  return absl::OkStatus();
}

std::string InceptionV3::stats_network() const {
  return absl::StrCat(kInceptionV3Name, ".", weights_tag_, ".pool3");
}

absl::Status InceptionV3::CheckInput(const Shape& s) const {
  const bool ok4 = s.size() == 4 && s[0] >= 1 && (s[1] == 1 || s[1] == 3) &&
                   s[2] >= 1 && s[3] >= 1;
  const bool ok3 = s.size() == 3 && s[0] >= 1 && s[1] >= 1 && s[2] >= 1;
  if (ok3 || ok4) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "inception-v3 scores 1- or 3-channel images of any size ([N, 1 or 3, "
      "H, W] or [N, H, W]; resized to 299x299) in [-1, 1], got ",
      ShapeToString(s)));
}

Tensor InceptionV3::ConvBnRelu(const std::string& name, const Tensor& x) {
  auto it = convs_.find(name);
  PG_CHECK(it != convs_.end()) << "inception-v3: no conv " << name;
  const Conv& c = it->second;
  PG_CHECK(x.ndim() == 4 && x.dim(1) == c.cin)
      << "inception-v3: " << name << " got " << ShapeToString(x.shape());
  const ConvGeometry g = ConvGeometry::Rect(
      static_cast<int>(x.dim(0)), c.cin, static_cast<int>(x.dim(2)),
      static_cast<int>(x.dim(3)), c.cout, c.kh, c.kw, c.stride, c.ph, c.pw);
  Tensor y = b_->Alloc({x.dim(0), c.cout, g.out_h(), g.out_w()});
  b_->ConvForward(g, x, c.w, &c.b, &y);
  b_->ActivationForward(Activation::kRelu, 0.0f, y, &y);
  return y;
}

Tensor InceptionV3::Pool(const Tensor& x, int kernel, int stride, int padding,
                         PoolMode mode) {
  PoolGeometry g;
  g.n = static_cast<int>(x.dim(0));
  g.channels = static_cast<int>(x.dim(1));
  g.in_h = static_cast<int>(x.dim(2));
  g.in_w = static_cast<int>(x.dim(3));
  g.kernel = kernel;
  g.stride = stride;
  g.padding = padding;
  g.mode = mode;
  Tensor y = b_->Alloc({x.dim(0), x.dim(1), g.out_h(), g.out_w()});
  b_->Pool2dForward(g, x, &y);
  return y;
}

Tensor InceptionV3::Concat(const std::vector<const Tensor*>& parts) {
  int64_t c = 0;
  for (const Tensor* p : parts) c += p->dim(1);
  const Tensor& f = *parts[0];
  Tensor y = b_->Alloc({f.dim(0), c, f.dim(2), f.dim(3)});
  b_->ConcatChannels(parts, &y);
  return y;
}

// InceptionA (FIDInceptionA): 1x1 | 1x1, 5x5 | 1x1, 3x3, 3x3 | avg 3x3
// excluding padding, 1x1.
Tensor InceptionV3::BlockA(const std::string& p, const Tensor& x) {
  Tensor b1 = ConvBnRelu(p + ".branch1x1", x);
  Tensor b5 = ConvBnRelu(p + ".branch5x5_2", ConvBnRelu(p + ".branch5x5_1", x));
  Tensor b3 = ConvBnRelu(
      p + ".branch3x3dbl_3",
      ConvBnRelu(p + ".branch3x3dbl_2", ConvBnRelu(p + ".branch3x3dbl_1", x)));
  Tensor bp =
      ConvBnRelu(p + ".branch_pool", Pool(x, 3, 1, 1, PoolMode::kAvgExclude));
  return Concat({&b1, &b5, &b3, &bp});
}

// InceptionB (torchvision's): 3x3/2 | 1x1, 3x3, 3x3/2 | max 3x3/2.
Tensor InceptionV3::BlockB(const std::string& p, const Tensor& x) {
  Tensor b3 = ConvBnRelu(p + ".branch3x3", x);
  Tensor bd = ConvBnRelu(
      p + ".branch3x3dbl_3",
      ConvBnRelu(p + ".branch3x3dbl_2", ConvBnRelu(p + ".branch3x3dbl_1", x)));
  Tensor bp = Pool(x, 3, 2, 0, PoolMode::kMax);
  return Concat({&b3, &bd, &bp});
}

// InceptionC (FIDInceptionC): 1x1 | 1x1, 1x7, 7x1 | 1x1, 7x1, 1x7, 7x1, 1x7 |
// avg 3x3 excluding padding, 1x1.
Tensor InceptionV3::BlockC(const std::string& p, const Tensor& x) {
  Tensor b1 = ConvBnRelu(p + ".branch1x1", x);
  Tensor b7 = ConvBnRelu(
      p + ".branch7x7_3",
      ConvBnRelu(p + ".branch7x7_2", ConvBnRelu(p + ".branch7x7_1", x)));
  Tensor bd = ConvBnRelu(p + ".branch7x7dbl_1", x);
  for (const char* s : {".branch7x7dbl_2", ".branch7x7dbl_3", ".branch7x7dbl_4",
                        ".branch7x7dbl_5"})
    bd = ConvBnRelu(p + s, bd);
  Tensor bp =
      ConvBnRelu(p + ".branch_pool", Pool(x, 3, 1, 1, PoolMode::kAvgExclude));
  return Concat({&b1, &b7, &bd, &bp});
}

// InceptionD (torchvision's): 1x1, 3x3/2 | 1x1, 1x7, 7x1, 3x3/2 | max 3x3/2.
Tensor InceptionV3::BlockD(const std::string& p, const Tensor& x) {
  Tensor b3 = ConvBnRelu(p + ".branch3x3_2", ConvBnRelu(p + ".branch3x3_1", x));
  Tensor b7 = ConvBnRelu(p + ".branch7x7x3_1", x);
  for (const char* s : {".branch7x7x3_2", ".branch7x7x3_3", ".branch7x7x3_4"})
    b7 = ConvBnRelu(p + s, b7);
  Tensor bp = Pool(x, 3, 2, 0, PoolMode::kMax);
  return Concat({&b3, &b7, &bp});
}

// InceptionE (FIDInceptionE_1 / _2): 1x1 | 1x1, (1x3 ; 3x1) | 1x1, 3x3,
// (1x3 ; 3x1) | pool 3x3 (avg excluding padding, or max), 1x1.
Tensor InceptionV3::BlockE(const std::string& p, const Tensor& x,
                           PoolMode pool) {
  Tensor b1 = ConvBnRelu(p + ".branch1x1", x);
  Tensor t = ConvBnRelu(p + ".branch3x3_1", x);
  Tensor t2a = ConvBnRelu(p + ".branch3x3_2a", t);
  Tensor t2b = ConvBnRelu(p + ".branch3x3_2b", t);
  Tensor d =
      ConvBnRelu(p + ".branch3x3dbl_2", ConvBnRelu(p + ".branch3x3dbl_1", x));
  Tensor d3a = ConvBnRelu(p + ".branch3x3dbl_3a", d);
  Tensor d3b = ConvBnRelu(p + ".branch3x3dbl_3b", d);
  Tensor bp = ConvBnRelu(p + ".branch_pool", Pool(x, 3, 1, 1, pool));
  return Concat({&b1, &t2a, &t2b, &d3a, &d3b, &bp});
}

Tensor InceptionV3::Trunk(const Tensor& input) {
  Tensor x = ConvBnRelu("Conv2d_1a_3x3", input);
  x = ConvBnRelu("Conv2d_2a_3x3", x);
  x = ConvBnRelu("Conv2d_2b_3x3", x);
  x = Pool(x, 3, 2, 0, PoolMode::kMax);
  x = ConvBnRelu("Conv2d_3b_1x1", x);
  x = ConvBnRelu("Conv2d_4a_3x3", x);
  x = Pool(x, 3, 2, 0, PoolMode::kMax);
  for (const char* name : {"Mixed_5b", "Mixed_5c", "Mixed_5d"})
    x = BlockA(name, x);
  x = BlockB("Mixed_6a", x);
  for (const char* name : {"Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"})
    x = BlockC(name, x);
  x = BlockD("Mixed_7a", x);
  x = BlockE("Mixed_7b", x, PoolMode::kAvgExclude);
  x = BlockE("Mixed_7c", x, PoolMode::kMax);
  PG_CHECK(x.dim(1) == kInceptionV3FeatureDim)
      << "inception-v3: trunk output " << ShapeToString(x.shape());
  Tensor pool3 = b_->Alloc({x.dim(0), kInceptionV3FeatureDim});
  b_->SpatialSumForward(x, &pool3);
  b_->Scale(1.0f / static_cast<float>(x.dim(2) * x.dim(3)), &pool3);
  return pool3;
}

absl::StatusOr<InceptionOutputs> InceptionV3::Outputs(const Tensor& images,
                                                      int batch_size) {
  if (!loaded_)
    return absl::FailedPreconditionError("inception-v3: no weights loaded");
  if (images.device() != Device::kCpu || images.empty())
    return absl::InvalidArgumentError(
        "inception-v3: images must be a non-empty host tensor");
  PG_RETURN_IF_ERROR(CheckInput(images.shape()));
  if (batch_size < 1)
    return absl::InvalidArgumentError("inception-v3: batch_size must be >= 1");
  PG_RETURN_IF_ERROR(CheckUnitRange(images));
  const Shape& s = images.shape();
  const int64_t n = s[0];
  const int64_t channels = s.size() == 4 ? s[1] : 1;
  const int64_t h = s[s.size() - 2], w = s[s.size() - 1];
  const int64_t per_image = channels * h * w;
  const int64_t r = kInceptionV3Resolution;
  const int batch = std::min(batch_size, kInceptionV3MaxBatch);
  InceptionOutputs out;
  out.pool3 = Tensor::Host({n, kInceptionV3FeatureDim});
  out.logits = Tensor::Host({n, kInceptionV3Classes});
  out.logits_unbiased = Tensor::Host({n, kInceptionV3Classes});
  for (int64_t start = 0; start < n; start += batch) {
    const int64_t m = std::min<int64_t>(batch, n - start);
    Tensor x = b_->Alloc({m, channels, h, w});
    b_->Upload(images.data() + start * per_image, &x);
    // Resize (always, as pytorch-fid: identity at 299), then repeat one
    // channel to three (the same as repeating first: both are per-channel).
    Tensor resized = b_->Alloc({m, channels, r, r});
    b_->ResizeBilinearForward(x, &resized);
    Tensor rgb = resized;
    if (channels == 1) {
      rgb = b_->Alloc({m, 3, r, r});
      b_->ConcatChannels({&resized, &resized, &resized}, &rgb);
    }
    Tensor pool3 = Trunk(rgb);
    Tensor unbiased = b_->Alloc({m, kInceptionV3Classes});
    b_->Gemm(false, true, static_cast<int>(m), kInceptionV3Classes,
             kInceptionV3FeatureDim, 1.0f, pool3.data(), fc_w_.data(), 0.0f,
             unbiased.data());
    Tensor logits = b_->Clone(unbiased);
    b_->AddRowBias(fc_b_, &logits);
    b_->Download(pool3, out.pool3.data() + start * kInceptionV3FeatureDim);
    b_->Download(unbiased,
                 out.logits_unbiased.data() + start * kInceptionV3Classes);
    b_->Download(logits, out.logits.data() + start * kInceptionV3Classes);
  }
  b_->Synchronize();
  return out;
}

absl::StatusOr<FeatureOutputs> InceptionV3::Evaluate(const Tensor& images,
                                                     int batch_size) {
  absl::StatusOr<InceptionOutputs> all = Outputs(images, batch_size);
  if (!all.ok()) return all.status();
  FeatureOutputs out;
  out.features = all->pool3;
  out.logits = all->logits_unbiased;
  return out;
}

}  // namespace paragan::eval

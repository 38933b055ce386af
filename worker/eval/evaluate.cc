#include "worker/eval/evaluate.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <system_error>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/check.h"
#include "common/tensor_io.h"
#include "dataloader/datasets/dataset.h"
#include "worker/engine/backend.h"

namespace paragan::eval {
namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

std::string ShapeString(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i)
    absl::StrAppend(&out, i ? ", " : "", s[i]);
  return out + "]";
}

}  // namespace

absl::StatusOr<Tensor> SamplesFromNpy(const NpyArray& npy,
                                      const std::string& source) {
  const Shape& s = npy.shape;
  auto is_channels = [](int64_t c) { return c == 1 || c == 3; };
  int64_t n = 0, c = 1, h = 0, w = 0;
  bool channels_last = false;
  if (s.size() == 3) {
    n = s[0], h = s[1], w = s[2];
  } else if (s.size() == 4 && is_channels(s[1])) {
    n = s[0], c = s[1], h = s[2], w = s[3];
  } else if (s.size() == 4 && is_channels(s[3])) {
    n = s[0], h = s[1], w = s[2], c = s[3];
    channels_last = true;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        source,
        ": samples must have shape [N, H, W], [N, C, H, W] or [N, H, W, C] "
        "with C = 1 or 3, got ",
        ShapeString(s)));
  }
  if (n < 1)
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": no samples (N = ", n, ")"));
  if (h < 1 || w < 1 || h > 4096 || w > 4096)
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": image side must be in [1, 4096], got ", h, "x", w));
  const int64_t total = n * c * h * w;
  std::vector<float> v(total);
  if (npy.dtype == "|u1") {
    if (static_cast<int64_t>(npy.bytes.size()) != total)
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": truncated data"));
    const auto* p = reinterpret_cast<const uint8_t*>(npy.bytes.data());
    for (int64_t i = 0; i < total; ++i) v[i] = UnitFromPixel(p[i]);
  } else if (npy.dtype == "<f4") {
    if (static_cast<int64_t>(npy.bytes.size()) != total * 4)
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": truncated data"));
    std::memcpy(v.data(), npy.bytes.data(), total * 4);
    const int64_t per_image = c * h * w;
    for (int64_t i = 0; i < total; ++i) {
      const float x = v[i];
      if (!std::isfinite(x) || x < -1.001f || x > 1.001f)
        return absl::InvalidArgumentError(absl::StrFormat(
            "%s: float32 samples must be finite and in [-1, 1] (the "
            "generator's tanh range; uint8 files are converted as v/127.5-1), "
            "got %g in image %d at value %d",
            source, x, i / per_image, i % per_image));
    }
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": samples must be uint8 (|u1) or float32 (<f4), got dtype ",
        npy.dtype));
  }
  Tensor out = Tensor::Host({n, c, h, w});
  float* dst = out.data();
  if (!channels_last) {
    std::memcpy(dst, v.data(), total * sizeof(float));
  } else {
    for (int64_t i = 0; i < n; ++i)
      for (int64_t y = 0; y < h * w; ++y)
        for (int64_t k = 0; k < c; ++k)
          dst[(i * c + k) * h * w + y] = v[(i * h * w + y) * c + k];
  }
  return out;
}

absl::StatusOr<Tensor> LoadSamplesNpy(const std::string& path) {
  PG_ASSIGN_OR_RETURN(NpyArray npy, ReadNpy(path));
  return SamplesFromNpy(npy, path);
}

absl::StatusOr<Tensor> SamplesFromImageFolder(const std::string& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec))
    return absl::NotFoundError(absl::StrCat(dir, ": not a directory"));
  std::vector<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (!entry.is_regular_file()) continue;
    std::string ext = absl::AsciiStrToLower(entry.path().extension().string());
    if (ext == ".png" || ext == ".jpg" || ext == ".jpeg")
      files.push_back(entry.path().string());
  }
  if (ec)
    return absl::InternalError(
        absl::StrCat("cannot list ", dir, ": ", ec.message()));
  if (files.empty())
    return absl::InvalidArgumentError(
        absl::StrCat(dir, ": no .png, .jpg or .jpeg images"));
  std::sort(files.begin(), files.end());
  Tensor out;
  int64_t c = 0, h = 0, w = 0;
  for (size_t i = 0; i < files.size(); ++i) {
    PG_ASSIGN_OR_RETURN(Image im, DecodeImageFile(files[i]));
    if (i == 0) {
      c = im.channels, h = im.height, w = im.width;
      out = Tensor::Host({static_cast<int64_t>(files.size()), c, h, w});
    } else if (im.channels != c || im.height != h || im.width != w) {
      return absl::InvalidArgumentError(absl::StrCat(
          files[i], " is ", im.channels, "x", im.height, "x", im.width,
          " (channels x height x width) but ", files[0], " is ", c, "x", h,
          "x", w, ": every image in a folder must have the same size"));
    }
    float* dst = out.data() + i * c * h * w;
    for (int64_t y = 0; y < h * w; ++y)
      for (int64_t k = 0; k < c; ++k)
        dst[k * h * w + y] = UnitFromPixel(im.pixels[y * c + k]);
  }
  return out;
}

std::string DefaultReferencePath(const std::string& network) {
  std::string base;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) {
    base = x;
  } else if (const char* h = std::getenv("HOME"); h && *h) {
    base = std::string(h) + "/.cache";
  } else {
    base = "/tmp";
  }
  return base + "/paragan/reference/" + network + ".fashion_mnist-train.pgt";
}

std::string ReferenceFeaturesPath(const std::string& stats_path) {
  std::string base = stats_path;
  if (absl::EndsWith(base, ".pgt")) base.resize(base.size() - 4);
  return base + ".features.pgt";
}

absl::Status SaveReferenceFeatures(const std::string& path,
                                   const std::string& network,
                                   const Tensor& features) {
  std::vector<NamedArray> arrays;
  PG_ASSIGN_OR_RETURN(
      NamedArray net,
      MakeUint8Array("network", {static_cast<int64_t>(network.size())},
                     std::vector<uint8_t>(network.begin(), network.end())));
  arrays.push_back(std::move(net));
  std::vector<float> v(features.data(), features.data() + features.numel());
  PG_ASSIGN_OR_RETURN(NamedArray f,
                      MakeFloatArray("features", features.shape(), v));
  arrays.push_back(std::move(f));
  return WriteTensorFile(path, arrays);
}

absl::StatusOr<Tensor> LoadReferenceFeatures(const std::string& path,
                                             const std::string& network,
                                             int dim) {
  PG_ASSIGN_OR_RETURN(std::vector<NamedArray> arrays, ReadTensorFile(path));
  const NamedArray* net = FindArray(arrays, "network");
  const NamedArray* f = FindArray(arrays, "features");
  if (!net || !f)
    return absl::InvalidArgumentError(
        absl::StrCat(path,
                     ": not a reference features file (needs 'network' "
                     "and 'features')"));
  PG_ASSIGN_OR_RETURN(std::vector<uint8_t> nb, ToUint8Vector(*net));
  const std::string got(nb.begin(), nb.end());
  if (got != network)
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": features of network '", got, "', need '", network, "'"));
  if (f->dims.size() != 2 || f->dims[1] != dim || f->dims[0] < 2)
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": features must be [N >= 2, ", dim, "], got ",
                     ShapeString(f->dims)));
  PG_ASSIGN_OR_RETURN(std::vector<float> v, ToFloatVector(*f));
  return Tensor::HostFrom(f->dims, v);
}

absl::StatusOr<Reference> LoadOrComputeReference(const std::string& stats_path,
                                                 const std::string& data_dir,
                                                 FeatureNetwork* net,
                                                 int64_t max_images) {
  Reference ref;
  const auto t0 = Clock::now();
  const std::string fpath = ReferenceFeaturesPath(stats_path);
  std::error_code ec;
  if (std::filesystem::exists(stats_path, ec)) {
    PG_ASSIGN_OR_RETURN(ref.stats,
                        LoadReferenceStats(stats_path, net->stats_network(),
                                           net->resolution()));
    if (std::filesystem::exists(fpath, ec)) {
      PG_ASSIGN_OR_RETURN(ref.features,
                          LoadReferenceFeatures(fpath, net->stats_network(),
                                                ref.stats.dim));
    }
    ref.seconds = Since(t0);
    return ref;
  }
  // Before the features are computed: a folder that cannot be made should
  // not cost that time.
  if (const std::filesystem::path folder =
          std::filesystem::path(stats_path).parent_path();
      !folder.empty()) {
    std::filesystem::create_directories(folder, ec);
    if (ec) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot create the folder of the reference statistics ",
                       stats_path, ": ", ec.message()));
    }
  }
  PG_ASSIGN_OR_RETURN(std::unique_ptr<Dataset> ds,
                      OpenFashionMnist(data_dir, /*train=*/true));
  const DatasetInfo& info = ds->info();
  const int64_t n =
      max_images > 0 ? std::min<int64_t>(max_images, info.size) : info.size;
  Tensor images = Tensor::Host({n, 1, info.height, info.width});
  const int64_t pix = int64_t{info.channels} * info.height * info.width;
  for (int64_t i = 0; i < n; ++i) ds->Get(i, images.data() + i * pix, nullptr);
  PG_ASSIGN_OR_RETURN(FeatureOutputs outputs,
                      net->Evaluate(images, /*batch_size=*/500));
  ref.features = std::move(outputs.features);
  PG_ASSIGN_OR_RETURN(FeatureMatrix fm, FeatureMatrixOf(ref.features));
  PG_ASSIGN_OR_RETURN(
      ref.stats,
      ComputeFeatureStats(fm, {net->stats_network(),
                               absl::StrCat("fashion_mnist/train[", n, "]"),
                               net->resolution()}));
  PG_RETURN_IF_ERROR(SaveFeatureStats(stats_path, ref.stats));
  PG_RETURN_IF_ERROR(
      SaveReferenceFeatures(fpath, net->stats_network(), ref.features));
  ref.computed = true;
  ref.seconds = Since(t0);
  return ref;
}

absl::StatusOr<EvalResult> EvaluateSamples(FeatureNetwork* net,
                                           const Tensor& images,
                                           const Reference& ref,
                                           const EvalOptions& options) {
  EvalResult r;
  r.network = net->name();
  PG_RETURN_IF_ERROR(net->CheckInput(images.shape()));
  r.num_samples = images.dim(0);
  r.reference_count = ref.stats.count;
  const int64_t need = MinSamplesForFid(ref.stats.dim);
  if (r.num_samples < need)
    return absl::InvalidArgumentError(absl::StrCat(
        "FID needs at least ", need, " samples (more than the ", ref.stats.dim,
        "-d ", r.network, " features), got ", r.num_samples,
        "; use 10000 for numbers comparable with the README's"));
  if (r.num_samples < options.is_splits)
    return absl::InvalidArgumentError(
        absl::StrCat("IS needs at least ", options.is_splits, " samples"));
  auto t0 = Clock::now();
  PG_ASSIGN_OR_RETURN(FeatureOutputs out,
                      net->Evaluate(images, options.batch_size));
  r.features_seconds = Since(t0);
  t0 = Clock::now();
  PG_ASSIGN_OR_RETURN(FeatureMatrix fm, FeatureMatrixOf(out.features));
  PG_ASSIGN_OR_RETURN(
      FeatureStats stats,
      ComputeFeatureStats(fm, {net->stats_network(), options.dataset,
                               net->resolution()}));
  PG_ASSIGN_OR_RETURN(r.fid, Fid(stats, ref.stats));
  if (ref.features.numel() > 0) {
    PG_ASSIGN_OR_RETURN(FeatureMatrix rm, FeatureMatrixOf(ref.features));
    KidOptions ko;
    ko.subsets = options.kid_subsets;
    ko.subset_size =
        std::min({options.kid_subset_size, r.num_samples, ref.features.dim(0)});
    ko.seed = options.seed;
    PG_ASSIGN_OR_RETURN(r.kid, Kid(fm, rm, ko));
    r.has_kid = true;
    r.kid_subset_size = ko.subset_size;
  }
  PG_ASSIGN_OR_RETURN(FeatureMatrix lm, FeatureMatrixOf(out.logits));
  IsOptions io;
  io.splits = options.is_splits;
  PG_ASSIGN_OR_RETURN(r.is, InceptionScore(lm, io));
  r.metrics_seconds = Since(t0);
  return r;
}

std::string FormatResult(const EvalResult& r) {
  std::string s = absl::StrFormat("samples %d (reference %d)\n", r.num_samples,
                                  r.reference_count);
  absl::StrAppendFormat(&s, "FID(%s) %.4f\n", r.network, r.fid);
  if (r.has_kid)
    absl::StrAppendFormat(&s, "KID(%s) %.6f +- %.6f\n", r.network, r.kid.mean,
                          r.kid.std);
  else
    absl::StrAppendFormat(&s, "KID(%s) n/a (no reference features file)\n",
                          r.network);
  absl::StrAppendFormat(&s, "IS(%s) %.4f +- %.4f\n", r.network, r.is.mean,
                        r.is.std);
  return s;
}

std::string ResultJson(const EvalResult& r) {
  std::string s = absl::StrFormat(
      "{\"network\": \"%s\", \"num_samples\": %d, \"reference_count\": %d, "
      "\"fid\": %.17g, ",
      r.network, r.num_samples, r.reference_count, r.fid);
  if (r.has_kid)
    absl::StrAppendFormat(&s,
                          "\"kid_mean\": %.17g, \"kid_std\": %.17g, "
                          "\"kid_subset_size\": %d, ",
                          r.kid.mean, r.kid.std, r.kid_subset_size);
  else
    absl::StrAppend(&s, "\"kid_mean\": null, \"kid_std\": null, ");
  absl::StrAppendFormat(
      &s,
      "\"is_mean\": %.17g, \"is_std\": %.17g, "
      "\"features_seconds\": %.3f, \"metrics_seconds\": %.3f}\n",
      r.is.mean, r.is.std, r.features_seconds, r.metrics_seconds);
  return s;
}

}  // namespace paragan::eval

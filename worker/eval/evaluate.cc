#include "worker/eval/evaluate.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <system_error>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/check.h"
#include "common/tensor_io.h"
#include "dataloader/datasets/dataset.h"
#include "worker/engine/backend.h"
#include "worker/train/gan_trainer.h"
#include "worker/train/training_run.h"

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
  const int r = kFmnistCnnResolution;
  const bool ok_shape =
      (s.size() == 3 && s[1] == r && s[2] == r) ||
      (s.size() == 4 && s[1] == 1 && s[2] == r && s[3] == r) ||
      (s.size() == 4 && s[1] == r && s[2] == r && s[3] == 1);
  if (!ok_shape)
    return absl::InvalidArgumentError(absl::StrCat(
        source,
        ": samples must have shape [N, 32, 32], [N, 1, 32, 32] or "
        "[N, 32, 32, 1] (one-channel 32x32 images for fmnist-cnn), got ",
        ShapeString(s)));
  const int64_t n = s[0];
  if (n < 1)
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": no samples (N = ", n, ")"));
  const int64_t total = n * r * r;
  Tensor out = Tensor::Host({n, 1, r, r});
  float* dst = out.data();
  if (npy.dtype == "|u1") {
    if (static_cast<int64_t>(npy.bytes.size()) != total)
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": truncated data"));
    const auto* p = reinterpret_cast<const uint8_t*>(npy.bytes.data());
    for (int64_t i = 0; i < total; ++i) dst[i] = UnitFromPixel(p[i]);
  } else if (npy.dtype == "<f4") {
    if (static_cast<int64_t>(npy.bytes.size()) != total * 4)
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": truncated data"));
    std::memcpy(dst, npy.bytes.data(), total * 4);
    for (int64_t i = 0; i < total; ++i) {
      const float v = dst[i];
      if (!std::isfinite(v) || v < -1.001f || v > 1.001f)
        return absl::InvalidArgumentError(absl::StrFormat(
            "%s: float32 samples must be finite and in [-1, 1] (the "
            "generator's tanh range; uint8 files are converted as v/127.5-1), "
            "got %g in image %d at pixel %d",
            source, v, i / (r * r), i % (r * r)));
    }
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": samples must be uint8 (|u1) or float32 (<f4), got dtype ",
        npy.dtype));
  }
  return out;
}

absl::StatusOr<Tensor> LoadSamplesNpy(const std::string& path) {
  PG_ASSIGN_OR_RETURN(NpyArray npy, ReadNpy(path));
  return SamplesFromNpy(npy, path);
}

absl::StatusOr<Tensor> SamplesFromCheckpoint(const std::string& checkpoint,
                                             int64_t n, uint64_t seed,
                                             const std::string& device,
                                             int threads) {
  if (n < 1)
    return absl::InvalidArgumentError(
        absl::StrCat("--num_samples must be >= 1, got ", n));
  PG_ASSIGN_OR_RETURN(std::vector<NamedArray> arrays,
                      ReadTensorFile(checkpoint));
  PG_ASSIGN_OR_RETURN(ModelConfig model, ModelConfigFromState(arrays));
  if (model.resolution != kFmnistCnnResolution || model.image_channels != 1)
    return absl::InvalidArgumentError(
        absl::StrCat(checkpoint, ": model ", model.name, " makes ",
                     model.image_channels, "x", model.resolution, "x",
                     model.resolution, " images; fmnist-cnn scores 1x32x32"));
  PG_ASSIGN_OR_RETURN(std::unique_ptr<Backend> backend,
                      MakeBackend(device, threads));
  PG_ASSIGN_OR_RETURN(std::unique_ptr<GanTrainer> trainer,
                      TrainerFromCheckpoint(arrays, backend.get()));
  std::error_code ec;
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path(ec) /
      absl::StrCat("paragan_eval_", getpid(), "_", seed);
  std::filesystem::create_directories(dir, ec);
  if (ec)
    return absl::InternalError(
        absl::StrCat("cannot create ", dir.string(), ": ", ec.message()));
  const std::string prefix = (dir / "samples").string();
  absl::Status st = WriteSamples(trainer.get(), n, seed, prefix);
  absl::StatusOr<Tensor> images =
      st.ok() ? LoadSamplesNpy(prefix + ".npy") : absl::StatusOr<Tensor>(st);
  std::filesystem::remove_all(dir, ec);
  return images;
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
                                                 FmnistCnn* net) {
  Reference ref;
  const auto t0 = Clock::now();
  const std::string fpath = ReferenceFeaturesPath(stats_path);
  std::error_code ec;
  if (std::filesystem::exists(stats_path, ec)) {
    PG_ASSIGN_OR_RETURN(ref.stats,
                        LoadReferenceStats(stats_path, kFmnistCnnFeatureNetwork,
                                           kFmnistCnnResolution));
    if (std::filesystem::exists(fpath, ec)) {
      PG_ASSIGN_OR_RETURN(ref.features,
                          LoadReferenceFeatures(fpath, kFmnistCnnFeatureNetwork,
                                                ref.stats.dim));
    }
    ref.seconds = Since(t0);
    return ref;
  }
  PG_ASSIGN_OR_RETURN(std::unique_ptr<Dataset> ds,
                      OpenFashionMnist(data_dir, /*train=*/true));
  const DatasetInfo& info = ds->info();
  const int64_t n = info.size;
  Tensor images = Tensor::Host({n, 1, info.height, info.width});
  const int64_t pix = int64_t{info.channels} * info.height * info.width;
  for (int64_t i = 0; i < n; ++i) ds->Get(i, images.data() + i * pix, nullptr);
  PG_ASSIGN_OR_RETURN(ref.features, net->Features(images));
  PG_ASSIGN_OR_RETURN(FeatureMatrix fm, FeatureMatrixOf(ref.features));
  PG_ASSIGN_OR_RETURN(
      ref.stats,
      ComputeFeatureStats(fm, {kFmnistCnnFeatureNetwork,
                               absl::StrCat("fashion_mnist/train[", n, "]"),
                               kFmnistCnnResolution}));
  PG_RETURN_IF_ERROR(SaveFeatureStats(stats_path, ref.stats));
  PG_RETURN_IF_ERROR(
      SaveReferenceFeatures(fpath, kFmnistCnnFeatureNetwork, ref.features));
  ref.computed = true;
  ref.seconds = Since(t0);
  return ref;
}

absl::StatusOr<EvalResult> EvaluateSamples(FmnistCnn* net, const Tensor& images,
                                           const Reference& ref,
                                           const EvalOptions& options) {
  EvalResult r;
  r.num_samples = images.dim(0);
  r.reference_count = ref.stats.count;
  const int64_t need = MinSamplesForFid(ref.stats.dim);
  if (r.num_samples < need)
    return absl::InvalidArgumentError(absl::StrCat(
        "FID needs at least ", need, " samples (more than the ", ref.stats.dim,
        "-d fmnist-cnn features), got ", r.num_samples,
        "; use 10000 for numbers comparable with the README's"));
  if (r.num_samples < options.is_splits)
    return absl::InvalidArgumentError(
        absl::StrCat("IS needs at least ", options.is_splits, " samples"));
  auto t0 = Clock::now();
  PG_ASSIGN_OR_RETURN(FmnistCnnOutputs out,
                      net->Evaluate(images, options.batch_size));
  r.features_seconds = Since(t0);
  t0 = Clock::now();
  PG_ASSIGN_OR_RETURN(FeatureMatrix fm, FeatureMatrixOf(out.features));
  PG_ASSIGN_OR_RETURN(
      FeatureStats stats,
      ComputeFeatureStats(fm, {kFmnistCnnFeatureNetwork, options.dataset,
                               kFmnistCnnResolution}));
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

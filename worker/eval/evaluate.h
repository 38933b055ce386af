#ifndef PARAGAN_WORKER_EVAL_EVALUATE_H_
#define PARAGAN_WORKER_EVAL_EVALUATE_H_

// Scoring generated samples with a feature network (feature_networks.h):
// FID and KID against reference statistics/features of Fashion-MNIST train,
// IS over the network's logits. Samples come from an .npy or an image folder
// here, from a checkpoint or live parameter servers in generated_samples.h.
// The library behind paragan_eval (eval_main.cc), the launcher's evaluator
// and the trainer's own evaluation; it links no trainer code.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/image_io.h"
#include "common/tensor.h"
#include "worker/eval/feature_network.h"
#include "worker/eval/metrics.h"

namespace paragan::eval {

// The exact inverse of PixelFromUnit (common/image_io.h), which WriteSamples
// (worker/train/training_run.cc) uses: v / 127.5 - 1, so that
// PixelFromUnit(UnitFromPixel(v)) == v for every v.
inline float UnitFromPixel(uint8_t v) {
  return static_cast<float>(v) / 127.5f - 1.0f;
}

// An .npy of samples as a host [N, C, H, W] float32 tensor in [-1, 1]
// (C = 1 or 3): uint8 ("|u1", converted with UnitFromPixel) or float32
// ("<f4", used as is, must be finite and within [-1, 1] up to 1e-3), of
// shape [N, H, W], [N, C, H, W] or [N, H, W, C]. Refuses other dtypes and
// shapes, N < 1 and out-of-range floats, naming `source` and what was wrong.
// Whether the feature network accepts the size is its CheckInput's call.
absl::StatusOr<Tensor> SamplesFromNpy(const NpyArray& npy,
                                      const std::string& source);
absl::StatusOr<Tensor> LoadSamplesNpy(const std::string& path);

// Every .png/.jpg/.jpeg file in `dir` (not recursive, sorted by name) as
// [N, C, H, W] in [-1, 1]; all must have the first one's size and channels
// (the error names the first that differs). Other files are ignored; no
// image at all is an error.
absl::StatusOr<Tensor> SamplesFromImageFolder(const std::string& dir);

// Reference features beside a statistics file: "<stats minus
// .pgt>.features.pgt" (PGTENS01: "network" uint8 text, "features" float32 [N,
// dim]); KID needs features, not only moments.
std::string ReferenceFeaturesPath(const std::string& stats_path);
absl::Status SaveReferenceFeatures(const std::string& path,
                                   const std::string& network,
                                   const Tensor& features);
// Refuses another network or dim.
absl::StatusOr<Tensor> LoadReferenceFeatures(const std::string& path,
                                             const std::string& network,
                                             int dim);

// The per-user cache of `network`'s Fashion-MNIST train reference, shared by
// every run on the machine: $XDG_CACHE_HOME (or ~/.cache, or /tmp)
// /paragan/reference/<network>.fashion_mnist-train.pgt; the directory and
// the file are created on first use (LoadOrComputeReference).
std::string DefaultReferencePath(const std::string& network);

struct Reference {
  FeatureStats stats;
  Tensor features;        // empty when the features file is missing
  bool computed = false;  // true: computed now and saved
  double seconds = 0;
};

// Loads `stats_path` (LoadReferenceStats: refused unless of `net`'s features
// at its resolution) and its features file when present; when the stats file
// does not exist, computes both from the Fashion-MNIST train images in
// `data_dir` (the first `max_images`, all when <= 0) with `net` and saves
// them.
absl::StatusOr<Reference> LoadOrComputeReference(const std::string& stats_path,
                                                 const std::string& data_dir,
                                                 FeatureNetwork* net,
                                                 int64_t max_images = 0);

struct EvalOptions {
  int kid_subsets = 100;
  int64_t kid_subset_size = 1000;  // capped at min(N, reference N)
  int is_splits = 10;
  uint64_t seed = 0;
  int batch_size = 500;
  std::string dataset = "samples";  // FeatureStatsInfo::dataset of the samples
};

struct EvalResult {
  int64_t num_samples = 0;
  int64_t reference_count = 0;
  std::string network;  // FeatureNetwork::name()
  double fid = 0;
  bool has_kid = false;
  KidResult kid;
  int64_t kid_subset_size = 0;
  IsResult is;
  double features_seconds = 0;
  double metrics_seconds = 0;
};

// Minimum N for FID with dim-`dim` features (N > dim, see FidOptions).
inline int64_t MinSamplesForFid(int dim) { return dim + 1; }

// Features and logits of `images` with `net`, then FID against ref.stats,
// KID against ref.features (when present) and IS. Refuses N below
// MinSamplesForFid or below is_splits, saying how many are needed.
absl::StatusOr<EvalResult> EvaluateSamples(FeatureNetwork* net,
                                           const Tensor& images,
                                           const Reference& ref,
                                           const EvalOptions& options = {});

// "FID(fmnist-cnn) 12.34" etc., one metric a line, plus "samples N".
std::string FormatResult(const EvalResult& r);
std::string ResultJson(const EvalResult& r);

}  // namespace paragan::eval

#endif  // PARAGAN_WORKER_EVAL_EVALUATE_H_

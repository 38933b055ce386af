#ifndef PARAGAN_WORKER_EVAL_EVALUATE_H_
#define PARAGAN_WORKER_EVAL_EVALUATE_H_

// Scoring generated samples with fmnist-cnn (fmnist_cnn.h): FID and KID
// against reference statistics/features of Fashion-MNIST train, IS over the
// network's logits. The library behind paragan_eval (eval_main.cc).

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/image_io.h"
#include "common/tensor.h"
#include "worker/eval/fmnist_cnn.h"
#include "worker/eval/metrics.h"

namespace paragan::eval {

// The exact inverse of PixelFromUnit (common/image_io.h), which WriteSamples
// (worker/train/training_run.cc) uses: v / 127.5 - 1, so that
// PixelFromUnit(UnitFromPixel(v)) == v for every v.
inline float UnitFromPixel(uint8_t v) {
  return static_cast<float>(v) / 127.5f - 1.0f;
}

// An .npy of samples as a host [N, 1, 32, 32] float32 tensor in [-1, 1]:
// uint8 ("|u1", converted with UnitFromPixel) or float32 ("<f4", used as is,
// must be finite and within [-1, 1] up to 1e-3), of shape [N, 32, 32],
// [N, 1, 32, 32] or [N, 32, 32, 1]. Refuses other dtypes, shapes, N < 1 and
// out-of-range floats, naming `source` and what was wrong.
absl::StatusOr<Tensor> SamplesFromNpy(const NpyArray& npy,
                                      const std::string& source);
absl::StatusOr<Tensor> LoadSamplesNpy(const std::string& path);

// `n` EMA-generator samples of a paragan_train checkpoint, produced exactly
// as paragan_sample does (the same WriteSamples, into a temporary directory,
// so the uint8 quantization is included), then read back with LoadSamplesNpy.
absl::StatusOr<Tensor> SamplesFromCheckpoint(const std::string& checkpoint,
                                             int64_t n, uint64_t seed,
                                             const std::string& device,
                                             int threads);

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

struct Reference {
  FeatureStats stats;
  Tensor features;        // empty when the features file is missing
  bool computed = false;  // true: computed now and saved
  double seconds = 0;
};

// Loads `stats_path` (LoadReferenceStats: fmnist-cnn features, resolution 32)
// and its features file when present; when the stats file does not exist,
// computes both from all Fashion-MNIST train images in `data_dir` with `net`
// and saves them.
absl::StatusOr<Reference> LoadOrComputeReference(const std::string& stats_path,
                                                 const std::string& data_dir,
                                                 FmnistCnn* net);

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
  std::string network = "fmnist-cnn";
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
absl::StatusOr<EvalResult> EvaluateSamples(FmnistCnn* net, const Tensor& images,
                                           const Reference& ref,
                                           const EvalOptions& options = {});

// "FID(fmnist-cnn) 12.34" etc., one metric a line, plus "samples N".
std::string FormatResult(const EvalResult& r);
std::string ResultJson(const EvalResult& r);

}  // namespace paragan::eval

#endif  // PARAGAN_WORKER_EVAL_EVALUATE_H_

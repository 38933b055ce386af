#ifndef PARAGAN_WORKER_EVAL_METRICS_H_
#define PARAGAN_WORKER_EVAL_METRICS_H_

// Sample-quality metrics over feature activations: FID (Heusel et al. 2017),
// KID (Binkowski et al. 2018) and IS (Salimans et al. 2016), computed the way
// pytorch-fid and torch-fidelity compute them, so numbers are comparable with
// published ones when the features come from the same network. No feature
// network lives here: callers pass [N, dim] float32 activations (InceptionV3
// pool3, a Fashion-MNIST classifier's penultimate layer, ...). Everything is
// accumulated and decomposed in float64; the linear algebra is OpenBLAS's
// BLAS and LAPACK, so its thread count (OPENBLAS_NUM_THREADS or
// openblas_set_num_threads) is the parallelism.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/rng.h"
#include "common/tensor.h"

namespace paragan::eval {

// A borrowed row-major float32 matrix: `shape` must be [N, dim] with
// 0 < dim <= 16384 and `data` hold N * dim values. The functions below refuse
// any other shape.
struct FeatureMatrix {
  const float* data = nullptr;
  Shape shape;
};

// A view of a host tensor of shape [N, dim] (refuses CUDA tensors, whose
// buffer this host code cannot read).
absl::StatusOr<FeatureMatrix> FeatureMatrixOf(const Tensor& tensor);

// What produced a set of features; two sets are comparable only when network
// and resolution (and hence dim) agree. `dataset` is informational (comparing
// different datasets is the point).
struct FeatureStatsInfo {
  std::string network;  // e.g. "inception_v3_pool3", "fmnist_cnn_fc1"
  std::string dataset;  // e.g. "fashion_mnist/train", "dcgan32@3000"
  int resolution = 0;   // image side the network saw, in pixels
};

// First and second moments of a feature set: mean (dim) and the unbiased
// covariance (dim x dim, row-major; divided by count - 1, like
// numpy.cov(rowvar=False)), in float64.
struct FeatureStats {
  int64_t count = 0;
  int dim = 0;
  std::vector<double> mean;
  std::vector<double> cov;
  std::string network;
  std::string dataset;
  int resolution = 0;
};

// Streams batches of activations into FeatureStats without holding them all:
// each batch is centered on its own float64 mean before its scatter matrix is
// formed (so large means do not cancel the variance away, unlike the
// E[x x^T] - mu mu^T shortcut), and batches are merged with Chan, Golub &
// LeVeque's pairwise update. Not thread-safe.
class FeatureStatsAccumulator {
 public:
  explicit FeatureStatsAccumulator(int dim);

  // Refuses a batch whose shape is not [n, dim] or that holds a non-finite
  // value (naming the row and column); the accumulator is unchanged then.
  absl::Status Add(const FeatureMatrix& batch);
  int64_t count() const { return count_; }
  int dim() const { return dim_; }
  // Needs at least 2 samples (an unbiased covariance divides by count - 1).
  absl::StatusOr<FeatureStats> Finish(const FeatureStatsInfo& info) const;

 private:
  int dim_;
  int64_t count_ = 0;
  std::vector<double> mean_;
  std::vector<double> scatter_;  // sum of centered outer products (lower)
};

// All of `features` at once (internally in batches through the accumulator).
absl::StatusOr<FeatureStats> ComputeFeatureStats(const FeatureMatrix& features,
                                                 const FeatureStatsInfo& info);

// Sizes agree with dim, count >= 2, values finite.
absl::Status ValidateFeatureStats(const FeatureStats& stats);
// Same dim, network and resolution; the error names both sides.
absl::Status CheckComparable(const FeatureStats& a, const FeatureStats& b);

struct FidOptions {
  // FID estimated from N samples is biased upward, by roughly c / N with a c
  // that depends on the network and on both distributions (Chong & Forsyth
  // 2020, "Effectively Unbiased FID and Inception Score"), so FIDs are only
  // comparable at equal N against the same reference statistics. When
  // N <= dim the covariance is singular (rank <= N - 1): the Frechet
  // distance then measures the sets only inside an (N-1)-dimensional
  // subspace and the bias dominates the value (e.g. dim 2048 InceptionV3
  // features from 1000 images give FIDs not comparable with anyone's).
  // Fid() therefore refuses such stats unless this is set (tests, quick
  // looks at tiny sets).
  bool allow_rank_deficient = false;
};

// Frechet distance between the Gaussians N(mu_a, S_a) and N(mu_b, S_b):
//   |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2)).
// tr((S_a S_b)^(1/2)) is computed as the sum of the singular values of
// S_a^(1/2) S_b^(1/2), from symmetric eigendecompositions S = U L U^T of
// both covariances (LAPACK dsyevd) and an SVD (dgesdd) of
// L_a^(1/2) U_a^T U_b L_b^(1/2). That is the real part of the trace of
// scipy.linalg.sqrtm(S_a @ S_b) in pytorch-fid, without forming the
// non-symmetric product: its near-zero eigenvalues (singular covariances:
// N <= dim, duplicated or dead features) carry round-off of eps |S_a||S_b|
// whose square roots (~1e-8 |S|) sqrtm then adds up, and which can make
// sqrtm fail (pytorch-fid then retries on S + 1e-6 I). Here round-off stays
// near eps |S|. Not clamped at 0: an FID of -1e-12 is round-off.
// Refuses stats that fail ValidateFeatureStats or CheckComparable, and
// rank-deficient ones unless options.allow_rank_deficient.
absl::StatusOr<double> Fid(const FeatureStats& a, const FeatureStats& b,
                           const FidOptions& options = {});

struct KidOptions {
  int subsets = 100;           // torch-fidelity's kid_subsets
  int64_t subset_size = 1000;  // torch-fidelity's kid_subset_size
  uint64_t seed = 0;           // seeds the common/rng.h Rng of the subsets
};

struct KidResult {
  double mean = 0;                 // mean of the per-subset MMD^2
  double std = 0;                  // population std (numpy.std, ddof 0)
  std::vector<double> per_subset;  // unbiased MMD^2 of each subset pair
};

// KID: the unbiased estimate of MMD^2 with the polynomial kernel
// k(x, y) = (x.y / dim + 1)^3 on `subsets` pairs of random subsets of
// `subset_size` rows (drawn without replacement, from a then b, per pair),
// as torch-fidelity's kid (in float64 where it uses float32). KID is
// unbiased, so it has no N <= dim restriction. Refuses different dims,
// subsets < 1, subset_size < 2 or larger than either set.
absl::StatusOr<KidResult> Kid(const FeatureMatrix& a, const FeatureMatrix& b,
                              const KidOptions& options = {});

// The same on given subsets: pair i uses rows subsets_a[i] of a and
// subsets_b[i] of b (each 2 to 32768 distinct rows, unequal sizes allowed:
// MMD^2 = mean_{i!=j} k(x_i, x_j) + mean_{i!=j} k(y_i, y_j)
//         - 2 mean_{i,j} k(x_i, y_j),
// torch-fidelity's formula when the sizes are equal).
absl::StatusOr<KidResult> KidOnSubsets(
    const FeatureMatrix& a, const FeatureMatrix& b,
    const std::vector<std::vector<int64_t>>& subsets_a,
    const std::vector<std::vector<int64_t>>& subsets_b);

// k distinct indices uniformly from [0, n) (a partial Fisher-Yates shuffle
// driven by rng->Below), in draw order. Requires 0 <= k <= n < 2^32 (checked).
std::vector<int64_t> SampleWithoutReplacement(int64_t n, int64_t k, Rng* rng);

enum class ClassScores { kLogits, kProbabilities };

struct IsOptions {
  int splits = 10;
  ClassScores input = ClassScores::kLogits;
  // Like torch-fidelity, permute the rows before splitting (with the project
  // Rng, so the permutation differs from numpy's): otherwise samples stored
  // grouped by class make every split's marginal p(y) lopsided.
  bool shuffle = true;
  uint64_t seed = 2020;
};

struct IsResult {
  double mean = 0;                // mean of the per-split scores
  double std = 0;                 // population std (numpy.std, ddof 0)
  std::vector<double> per_split;  // exp(E_x KL(p(y|x) || p(y))) per split
};

// Inception Score of [N, K] class scores: p(y|x) is the float64 softmax of
// logits, or the given probabilities (each row must be >= 0 and sum to 1
// within 1e-3; rows are renormalized in float64, 0 log 0 = 0). The rows are
// cut into `splits` contiguous parts [i*N/splits, (i+1)*N/splits) as
// torch-fidelity does; each part scores exp(mean_x KL(p(y|x) || p(y))) with
// p(y) that part's mean. Refuses splits < 1, N < splits, K < 2, non-finite
// values.
absl::StatusOr<IsResult> InceptionScore(const FeatureMatrix& scores,
                                        const IsOptions& options = {});

// FeatureStats as a PGTENS01 tensor file (common/tensor_io.h, CRC-checked,
// written atomically). The container has no float64 dtype, so mean and cov
// are stored losslessly as their IEEE-754 binary64 bit patterns in int64
// arrays ("mean_f64bits" [dim], "cov_f64bits" [dim, dim]); a float32 copy
// would perturb the FID of near-identical sets. Metadata: "format" (uint8
// text "paragan.feature_stats.v1"), "network", "dataset" (uint8 text),
// "resolution", "count" (int64 [1]).
absl::Status SaveFeatureStats(const std::string& path,
                              const FeatureStats& stats);
// Reads, verifies the format and ValidateFeatureStats.
absl::StatusOr<FeatureStats> LoadFeatureStats(const std::string& path);
// LoadFeatureStats, refusing a file computed with another network or
// resolution than the features it is to be compared with.
absl::StatusOr<FeatureStats> LoadReferenceStats(const std::string& path,
                                                absl::string_view network,
                                                int resolution);

}  // namespace paragan::eval

#endif  // PARAGAN_WORKER_EVAL_METRICS_H_

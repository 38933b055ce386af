#include "worker/eval/metrics.h"

#include <cblas.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <numeric>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "common/tensor_io.h"

extern "C" {
// LAPACK from Debian's libopenblas: the symmetric eigensolver and the SVD,
// both divide and conquer. Fortran calling convention: everything by pointer,
// plus gfortran's hidden lengths of the two character arguments.
void dsyevd_(const char* jobz, const char* uplo, const int* n, double* a,
             const int* lda, double* w, double* work, const int* lwork,
             int* iwork, const int* liwork, int* info, size_t jobz_len,
             size_t uplo_len);
void dgesdd_(const char* jobz, const int* m, const int* n, double* a,
             const int* lda, double* s, double* u, const int* ldu, double* vt,
             const int* ldvt, double* work, const int* lwork, int* iwork,
             int* info, size_t jobz_len);
}

namespace paragan::eval {
namespace {

// Rows per accumulator step: bounds the float64 copy to 1024 * dim * 8 bytes
// (16 MiB at dim 2048) while keeping dsyrk's inner dimension large.
constexpr int64_t kBatchRows = 1024;
// Largest dim accepted: dsyevd's workspace (1 + 6 d + 2 d^2 doubles) must fit
// LAPACK's 32-bit int, and a 16384^2 covariance is already 2 GiB.
constexpr int64_t kMaxDim = 16384;
// Largest KID subset: its Gram matrix is subset^2 doubles (8 GiB here).
constexpr size_t kMaxSubset = 32768;
constexpr char kStatsFormat[] = "paragan.feature_stats.v1";

absl::Status CheckMatrix(const FeatureMatrix& m, absl::string_view what) {
  if (m.shape.size() != 2 || m.shape[0] < 0 || m.shape[1] <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " must be an [N, dim] matrix with dim > 0, got shape ",
        ShapeToString(m.shape)));
  }
  if (m.shape[1] > kMaxDim) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " has dim ", m.shape[1], ", more than the supported ", kMaxDim));
  }
  if (m.data == nullptr && m.shape[0] > 0) {
    return absl::InvalidArgumentError(absl::StrCat(what, " has no data"));
  }
  return absl::OkStatus();
}

absl::Status CheckFinite(const FeatureMatrix& m, absl::string_view what) {
  const int64_t n = m.shape[0], d = m.shape[1];
  for (int64_t i = 0; i < n * d; ++i) {
    if (!std::isfinite(m.data[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " holds a non-finite value (", m.data[i],
                       ") at row ", i / d, ", column ", i % d));
    }
  }
  return absl::OkStatus();
}

// Eigenvalues (ascending) of the symmetric n x n matrix `a`, and with
// `vectors` its eigenvectors, overwriting `a`: row j of the row-major result
// is the eigenvector of w[j] (LAPACK's column j, as the storage orders are
// transposes of each other; the symmetric input reads the same either way).
absl::Status SymmetricEigen(int n, double* a, double* w, bool vectors) {
  const char jobz = vectors ? 'V' : 'N';
  const char uplo = 'L';
  int info = 0;
  int lwork = -1, liwork = -1;
  double work_query = 0;
  int iwork_query = 0;
  dsyevd_(&jobz, &uplo, &n, a, &n, w, &work_query, &lwork, &iwork_query,
          &liwork, &info, 1, 1);
  if (info != 0) {
    return absl::InternalError(
        absl::StrCat("LAPACK dsyevd workspace query failed, info=", info));
  }
  lwork = static_cast<int>(work_query);
  liwork = iwork_query;
  std::vector<double> work(std::max(lwork, 1));
  std::vector<int> iwork(std::max(liwork, 1));
  dsyevd_(&jobz, &uplo, &n, a, &n, w, work.data(), &lwork, iwork.data(),
          &liwork, &info, 1, 1);
  if (info != 0) {
    return absl::InternalError(absl::StrCat(
        "LAPACK dsyevd failed on a ", n, "x", n, " matrix, info=", info,
        info > 0 ? " (did not converge)" : " (bad argument)"));
  }
  return absl::OkStatus();
}

// R = L^(1/2) U^T for the symmetric PSD d x d matrix `cov` = U L U^T, keeping
// only the rows of positive eigenvalues (round-off makes the zero ones of a
// singular covariance slightly negative): *rank x d, row-major.
absl::StatusOr<std::vector<double>> ScaledEigenvectors(
    const std::vector<double>& cov, int d, int* rank) {
  std::vector<double> u = cov;
  std::vector<double> eig(d);
  PG_RETURN_IF_ERROR(SymmetricEigen(d, u.data(), eig.data(), true));
  int r = 0;
  for (int j = 0; j < d; ++j) {
    if (!(eig[j] > 0)) continue;
    const double s = std::sqrt(eig[j]);
    const double* src = u.data() + static_cast<size_t>(j) * d;
    double* dst = u.data() + static_cast<size_t>(r) * d;
    for (int k = 0; k < d; ++k) dst[k] = src[k] * s;  // r <= j: in place
    ++r;
  }
  u.resize(static_cast<size_t>(r) * d);
  *rank = r;
  return u;
}

// Singular values of the column-major m x n matrix `a` (destroyed), by
// LAPACK dgesdd without vectors.
absl::StatusOr<std::vector<double>> SingularValues(int m, int n, double* a) {
  const char jobz = 'N';
  const int ld_unused = 1;
  std::vector<double> s(std::min(m, n));
  std::vector<int> iwork(8 * static_cast<size_t>(std::min(m, n)));
  int info = 0, lwork = -1;
  double work_query = 0;
  dgesdd_(&jobz, &m, &n, a, &m, s.data(), nullptr, &ld_unused, nullptr,
          &ld_unused, &work_query, &lwork, iwork.data(), &info, 1);
  if (info != 0) {
    return absl::InternalError(
        absl::StrCat("LAPACK dgesdd workspace query failed, info=", info));
  }
  lwork = static_cast<int>(work_query);
  std::vector<double> work(std::max(lwork, 1));
  dgesdd_(&jobz, &m, &n, a, &m, s.data(), nullptr, &ld_unused, nullptr,
          &ld_unused, work.data(), &lwork, iwork.data(), &info, 1);
  if (info != 0) {
    return absl::InternalError(absl::StrCat(
        "LAPACK dgesdd failed on a ", m, "x", n, " matrix, info=", info,
        info > 0 ? " (did not converge)" : " (bad argument)"));
  }
  return s;
}

std::string Describe(const FeatureStats& s) {
  return absl::StrCat("network '", s.network, "' at resolution ", s.resolution,
                      " (dim ", s.dim, ", dataset '", s.dataset, "', ", s.count,
                      " samples)");
}

// Mean and population std (numpy.std's default ddof 0, as torch-fidelity).
void MeanStd(const std::vector<double>& v, double* mean, double* std) {
  double m = 0;
  for (double x : v) m += x;
  m /= static_cast<double>(v.size());
  double var = 0;
  for (double x : v) var += (x - m) * (x - m);
  *mean = m;
  *std = std::sqrt(var / static_cast<double>(v.size()));
}

// Rows `rows` of `m`, in float64.
std::vector<double> GatherRows(const FeatureMatrix& m,
                               const std::vector<int64_t>& rows) {
  const int64_t d = m.shape[1];
  std::vector<double> out(rows.size() * d);
  for (size_t r = 0; r < rows.size(); ++r) {
    const float* src = m.data + rows[r] * d;
    double* dst = out.data() + r * d;
    for (int64_t c = 0; c < d; ++c) dst[c] = src[c];
  }
  return out;
}

absl::Status CheckSubset(const std::vector<int64_t>& subset, int64_t n,
                         absl::string_view what) {
  if (subset.size() > kMaxSubset) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " has ", subset.size(),
                     " rows, more than the supported ", kMaxSubset));
  }
  if (subset.size() < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " has ", subset.size(),
                     " rows; the unbiased MMD^2 needs at least 2"));
  }
  for (int64_t i : subset) {
    if (i < 0 || i >= n) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " holds row ", i, ", outside [0, ", n, ")"));
    }
  }
  std::vector<int64_t> sorted = subset;
  std::sort(sorted.begin(), sorted.end());
  if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end()) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " repeats a row (subsets are drawn without replacement)"));
  }
  return absl::OkStatus();
}

inline double PolyKernel(double dot, double inv_dim) {
  const double v = dot * inv_dim + 1.0;
  return v * v * v;
}

// Sum of k(x_i, x_j) over i != j for the rows of x (m x d): the strictly
// lower triangle of x x^T (dsyrk), counted twice.
double OffDiagonalKernelSum(const std::vector<double>& x, int m, int d) {
  std::vector<double> gram(static_cast<size_t>(m) * m);
  cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, m, d, 1.0, x.data(), d,
              0.0, gram.data(), m);
  const double inv_dim = 1.0 / d;
  double sum = 0;
  for (int i = 1; i < m; ++i) {
    const double* row = gram.data() + static_cast<size_t>(i) * m;
    double row_sum = 0;
    for (int j = 0; j < i; ++j) row_sum += PolyKernel(row[j], inv_dim);
    sum += row_sum;
  }
  return 2.0 * sum;
}

double CrossKernelSum(const std::vector<double>& x, int m,
                      const std::vector<double>& y, int n, int d) {
  std::vector<double> gram(static_cast<size_t>(m) * n);
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, d, 1.0, x.data(),
              d, y.data(), d, 0.0, gram.data(), n);
  const double inv_dim = 1.0 / d;
  double sum = 0;
  for (int i = 0; i < m; ++i) {
    const double* row = gram.data() + static_cast<size_t>(i) * n;
    double row_sum = 0;
    for (int j = 0; j < n; ++j) row_sum += PolyKernel(row[j], inv_dim);
    sum += row_sum;
  }
  return sum;
}

absl::StatusOr<NamedArray> TextArray(std::string name, absl::string_view text) {
  return MakeUint8Array(std::move(name), {static_cast<int64_t>(text.size())},
                        std::vector<uint8_t>(text.begin(), text.end()));
}

// float64 values as their bit patterns (PGTENS01 has no float64 dtype).
absl::StatusOr<NamedArray> Float64BitsArray(std::string name, Shape dims,
                                            const std::vector<double>& values) {
  std::vector<int64_t> bits(values.size());
  static_assert(sizeof(double) == sizeof(int64_t), "IEEE-754 binary64");
  if (!values.empty()) {
    std::memcpy(bits.data(), values.data(), values.size() * sizeof(double));
  }
  return MakeInt64Array(std::move(name), std::move(dims), bits);
}

absl::Status Missing(const std::string& path, absl::string_view name) {
  return absl::InvalidArgumentError(
      absl::StrCat(path, ": no '", name, "' array (not a FeatureStats file?)"));
}

absl::StatusOr<std::string> ReadText(const std::vector<NamedArray>& arrays,
                                     const std::string& path,
                                     absl::string_view name) {
  const NamedArray* a = FindArray(arrays, name);
  if (a == nullptr) return Missing(path, name);
  PG_ASSIGN_OR_RETURN(std::vector<uint8_t> v, ToUint8Vector(*a));
  return std::string(v.begin(), v.end());
}

absl::StatusOr<int64_t> ReadScalar(const std::vector<NamedArray>& arrays,
                                   const std::string& path,
                                   absl::string_view name) {
  const NamedArray* a = FindArray(arrays, name);
  if (a == nullptr) return Missing(path, name);
  PG_ASSIGN_OR_RETURN(std::vector<int64_t> v, ToInt64Vector(*a));
  if (v.size() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": '", name, "' must hold one value"));
  }
  return v[0];
}

absl::StatusOr<std::vector<double>> ReadFloat64Bits(
    const std::vector<NamedArray>& arrays, const std::string& path,
    absl::string_view name, const Shape& dims) {
  const NamedArray* a = FindArray(arrays, name);
  if (a == nullptr) return Missing(path, name);
  if (a->dims != dims) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": '", name, "' has shape ", ShapeToString(a->dims),
                     ", expected ", ShapeToString(dims)));
  }
  PG_ASSIGN_OR_RETURN(std::vector<int64_t> bits, ToInt64Vector(*a));
  std::vector<double> values(bits.size());
  if (!bits.empty()) {
    std::memcpy(values.data(), bits.data(), bits.size() * sizeof(double));
  }
  return values;
}

}  // namespace

absl::StatusOr<FeatureMatrix> FeatureMatrixOf(const Tensor& tensor) {
  if (tensor.device() != Device::kCpu) {
    return absl::InvalidArgumentError(
        "features must be a host tensor (copy CUDA activations to the host)");
  }
  FeatureMatrix m{tensor.data(), tensor.shape()};
  PG_RETURN_IF_ERROR(CheckMatrix(m, "features"));
  return m;
}

FeatureStatsAccumulator::FeatureStatsAccumulator(int dim)
    : dim_(dim),
      mean_(std::max(dim, 0), 0.0),
      scatter_(static_cast<size_t>(std::max(dim, 0)) * std::max(dim, 0), 0.0) {
  PG_CHECK(dim > 0 && dim <= kMaxDim) << "dim " << dim;
}

absl::Status FeatureStatsAccumulator::Add(const FeatureMatrix& batch) {
  PG_RETURN_IF_ERROR(CheckMatrix(batch, "feature batch"));
  if (batch.shape[1] != dim_) {
    return absl::InvalidArgumentError(
        absl::StrCat("feature batch has dim ", batch.shape[1],
                     ", the accumulator dim ", dim_));
  }
  PG_RETURN_IF_ERROR(CheckFinite(batch, "feature batch"));
  const int64_t n = batch.shape[0];
  const int d = dim_;
  std::vector<double> centered(std::min(n, kBatchRows) * d);
  std::vector<double> batch_mean(d), delta(d);
  for (int64_t start = 0; start < n; start += kBatchRows) {
    const int rows = static_cast<int>(std::min(kBatchRows, n - start));
    const float* x = batch.data + start * d;
    // Two passes over the chunk: its mean, then the centered copy.
    std::fill(batch_mean.begin(), batch_mean.end(), 0.0);
    for (int r = 0; r < rows; ++r) {
      for (int c = 0; c < d; ++c) batch_mean[c] += x[r * d + c];
    }
    for (int c = 0; c < d; ++c) batch_mean[c] /= rows;
    for (int r = 0; r < rows; ++r) {
      for (int c = 0; c < d; ++c) {
        centered[r * d + c] = x[r * d + c] - batch_mean[c];
      }
    }
    // Chan et al.: M2 = M2_old + M2_chunk + delta delta^T n_old n_chunk / n.
    const int64_t total = count_ + rows;
    for (int c = 0; c < d; ++c) delta[c] = batch_mean[c] - mean_[c];
    cblas_dsyrk(CblasRowMajor, CblasLower, CblasTrans, d, rows, 1.0,
                centered.data(), d, 1.0, scatter_.data(), d);
    if (count_ > 0) {
      const double w = static_cast<double>(count_) * rows / total;
      cblas_dsyr(CblasRowMajor, CblasLower, d, w, delta.data(), 1,
                 scatter_.data(), d);
    }
    const double f = static_cast<double>(rows) / total;
    for (int c = 0; c < d; ++c) mean_[c] += delta[c] * f;
    count_ = total;
  }
  return absl::OkStatus();
}

absl::StatusOr<FeatureStats> FeatureStatsAccumulator::Finish(
    const FeatureStatsInfo& info) const {
  if (count_ < 2) {
    return absl::FailedPreconditionError(absl::StrCat(
        "feature statistics need at least 2 samples (the unbiased covariance "
        "divides by N - 1), got ",
        count_));
  }
  FeatureStats s;
  s.count = count_;
  s.dim = dim_;
  s.mean = mean_;
  s.cov.resize(static_cast<size_t>(dim_) * dim_);
  const double inv = 1.0 / static_cast<double>(count_ - 1);
  for (int i = 0; i < dim_; ++i) {
    for (int j = 0; j <= i; ++j) {
      const double v = scatter_[static_cast<size_t>(i) * dim_ + j] * inv;
      s.cov[static_cast<size_t>(i) * dim_ + j] = v;
      s.cov[static_cast<size_t>(j) * dim_ + i] = v;
    }
  }
  s.network = info.network;
  s.dataset = info.dataset;
  s.resolution = info.resolution;
  return s;
}

absl::StatusOr<FeatureStats> ComputeFeatureStats(const FeatureMatrix& features,
                                                 const FeatureStatsInfo& info) {
  PG_RETURN_IF_ERROR(CheckMatrix(features, "features"));
  FeatureStatsAccumulator acc(static_cast<int>(features.shape[1]));
  PG_RETURN_IF_ERROR(acc.Add(features));
  return acc.Finish(info);
}

absl::Status ValidateFeatureStats(const FeatureStats& s) {
  if (s.dim <= 0 || s.dim > kMaxDim) {
    return absl::InvalidArgumentError(
        absl::StrCat("feature stats have dim ", s.dim));
  }
  const size_t d = s.dim;
  if (s.mean.size() != d || s.cov.size() != d * d) {
    return absl::InvalidArgumentError(absl::StrCat(
        "feature stats of dim ", d, " have ", s.mean.size(), " mean and ",
        s.cov.size(), " covariance values (want ", d, " and ", d * d, ")"));
  }
  if (s.count < 2) {
    return absl::FailedPreconditionError(
        absl::StrCat("feature stats of ", Describe(s),
                     ": need at least 2 samples for a covariance"));
  }
  for (size_t i = 0; i < d; ++i) {
    if (!std::isfinite(s.mean[i])) {
      return absl::InvalidArgumentError("feature stats mean is not finite");
    }
    if (!(s.cov[i * d + i] >= 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("feature stats covariance diagonal ", i, " is ",
                       s.cov[i * d + i], " (must be >= 0)"));
    }
  }
  for (double v : s.cov) {
    if (!std::isfinite(v)) {
      return absl::InvalidArgumentError(
          "feature stats covariance is not finite");
    }
  }
  return absl::OkStatus();
}

absl::Status CheckComparable(const FeatureStats& a, const FeatureStats& b) {
  if (a.dim != b.dim || a.network != b.network ||
      a.resolution != b.resolution) {
    return absl::InvalidArgumentError(absl::StrCat(
        "feature stats are not comparable (network, resolution and dim must "
        "match): ",
        Describe(a), " vs ", Describe(b)));
  }
  return absl::OkStatus();
}

absl::StatusOr<double> Fid(const FeatureStats& a, const FeatureStats& b,
                           const FidOptions& options) {
  for (const FeatureStats* s : {&a, &b}) {
    const absl::Status st = ValidateFeatureStats(*s);
    if (!st.ok()) {
      return absl::Status(st.code(), absl::StrCat("FID: ", st.message()));
    }
  }
  PG_RETURN_IF_ERROR(CheckComparable(a, b));
  if (!options.allow_rank_deficient) {
    for (const FeatureStats* s : {&a, &b}) {
      if (s->count <= s->dim) {
        return absl::FailedPreconditionError(absl::StrCat(
            "FID of ", Describe(*s),
            ": with N <= dim the covariance is "
            "singular (rank <= N - 1) and FID is dominated by its small-"
            "sample bias; use at least ",
            s->dim + 1,
            " samples (FID is usually reported at N = 50000) or set "
            "FidOptions::allow_rank_deficient"));
      }
    }
  }
  const int d = a.dim;
  double mean_term = 0, trace_a = 0, trace_b = 0;
  for (int i = 0; i < d; ++i) {
    const double diff = a.mean[i] - b.mean[i];
    mean_term += diff * diff;
    trace_a += a.cov[static_cast<size_t>(i) * d + i];
    trace_b += b.cov[static_cast<size_t>(i) * d + i];
  }
  // tr((S_a S_b)^(1/2)) is the sum of the singular values of
  // S_a^(1/2) S_b^(1/2), and with S = U L U^T those equal the singular values
  // of P = L_a^(1/2) U_a^T U_b L_b^(1/2) = R_a R_b^T. Taking them from an
  // SVD of P, rather than as roots of the eigenvalues of P P^T (what sqrtm
  // of the product amounts to), keeps round-off at eps * |P| instead of
  // sqrt(eps) * |P| in the near-zero directions of singular covariances.
  int rank_a = 0, rank_b = 0;
  PG_ASSIGN_OR_RETURN(const std::vector<double> r_a,
                      ScaledEigenvectors(a.cov, d, &rank_a));
  PG_ASSIGN_OR_RETURN(const std::vector<double> r_b,
                      ScaledEigenvectors(b.cov, d, &rank_b));
  double trace_sqrt = 0;
  if (rank_a > 0 && rank_b > 0) {
    std::vector<double> p(static_cast<size_t>(rank_a) * rank_b);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rank_a, rank_b, d, 1.0,
                r_a.data(), d, r_b.data(), d, 0.0, p.data(), rank_b);
    // Row-major P is column-major P^T, which has the same singular values.
    PG_ASSIGN_OR_RETURN(const std::vector<double> sv,
                        SingularValues(rank_b, rank_a, p.data()));
    for (double s : sv) trace_sqrt += s;
  }
  return mean_term + trace_a + trace_b - 2.0 * trace_sqrt;
}

std::vector<int64_t> SampleWithoutReplacement(int64_t n, int64_t k, Rng* rng) {
  PG_CHECK(0 <= k && k <= n && n <= int64_t{UINT32_MAX})
      << "k " << k << " n " << n;
  std::vector<int64_t> pool(n);
  std::iota(pool.begin(), pool.end(), int64_t{0});
  for (int64_t i = 0; i < k; ++i) {
    const int64_t j = i + rng->Below(static_cast<uint32_t>(n - i));
    std::swap(pool[i], pool[j]);
  }
  pool.resize(k);
  return pool;
}

absl::StatusOr<KidResult> KidOnSubsets(
    const FeatureMatrix& a, const FeatureMatrix& b,
    const std::vector<std::vector<int64_t>>& subsets_a,
    const std::vector<std::vector<int64_t>>& subsets_b) {
  PG_RETURN_IF_ERROR(CheckMatrix(a, "KID features a"));
  PG_RETURN_IF_ERROR(CheckMatrix(b, "KID features b"));
  if (a.shape[1] != b.shape[1]) {
    return absl::InvalidArgumentError(
        absl::StrCat("KID: features have different dims: a ",
                     ShapeToString(a.shape), ", b ", ShapeToString(b.shape)));
  }
  if (subsets_a.empty() || subsets_a.size() != subsets_b.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "KID needs as many subsets of a as of b, at least one; got ",
        subsets_a.size(), " and ", subsets_b.size()));
  }
  PG_RETURN_IF_ERROR(CheckFinite(a, "KID features a"));
  PG_RETURN_IF_ERROR(CheckFinite(b, "KID features b"));
  const int d = static_cast<int>(a.shape[1]);
  KidResult result;
  for (size_t s = 0; s < subsets_a.size(); ++s) {
    PG_RETURN_IF_ERROR(CheckSubset(subsets_a[s], a.shape[0],
                                   absl::StrCat("KID subset ", s, " of a")));
    PG_RETURN_IF_ERROR(CheckSubset(subsets_b[s], b.shape[0],
                                   absl::StrCat("KID subset ", s, " of b")));
    const int m = static_cast<int>(subsets_a[s].size());
    const int n = static_cast<int>(subsets_b[s].size());
    const std::vector<double> x = GatherRows(a, subsets_a[s]);
    const std::vector<double> y = GatherRows(b, subsets_b[s]);
    const double kxx = OffDiagonalKernelSum(x, m, d);
    const double kyy = OffDiagonalKernelSum(y, n, d);
    const double kxy = CrossKernelSum(x, m, y, n, d);
    result.per_subset.push_back(kxx / (static_cast<double>(m) * (m - 1)) +
                                kyy / (static_cast<double>(n) * (n - 1)) -
                                2.0 * kxy / (static_cast<double>(m) * n));
  }
  MeanStd(result.per_subset, &result.mean, &result.std);
  return result;
}

absl::StatusOr<KidResult> Kid(const FeatureMatrix& a, const FeatureMatrix& b,
                              const KidOptions& options) {
  PG_RETURN_IF_ERROR(CheckMatrix(a, "KID features a"));
  PG_RETURN_IF_ERROR(CheckMatrix(b, "KID features b"));
  if (options.subsets < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("KID needs at least 1 subset, got ", options.subsets));
  }
  if (options.subset_size > static_cast<int64_t>(kMaxSubset)) {
    return absl::InvalidArgumentError(
        absl::StrCat("KID subset size ", options.subset_size,
                     " is more than the supported ", kMaxSubset));
  }
  if (options.subset_size < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "KID subset size must be at least 2, got ", options.subset_size));
  }
  for (const auto& [m, name] : {std::pair{&a, "a"}, std::pair{&b, "b"}}) {
    if (options.subset_size > m->shape[0]) {
      return absl::InvalidArgumentError(absl::StrCat(
          "KID subset size ", options.subset_size, " is larger than set ", name,
          " (", m->shape[0],
          " samples): lower KidOptions::subset_size or supply more samples"));
    }
    if (m->shape[0] > int64_t{UINT32_MAX}) {
      return absl::InvalidArgumentError("KID: more than 2^32 samples");
    }
  }
  Rng rng(options.seed);
  std::vector<std::vector<int64_t>> subsets_a, subsets_b;
  for (int s = 0; s < options.subsets; ++s) {
    subsets_a.push_back(
        SampleWithoutReplacement(a.shape[0], options.subset_size, &rng));
    subsets_b.push_back(
        SampleWithoutReplacement(b.shape[0], options.subset_size, &rng));
  }
  return KidOnSubsets(a, b, subsets_a, subsets_b);
}

absl::StatusOr<IsResult> InceptionScore(const FeatureMatrix& scores,
                                        const IsOptions& options) {
  PG_RETURN_IF_ERROR(CheckMatrix(scores, "IS class scores"));
  const int64_t n = scores.shape[0];
  const int k = static_cast<int>(scores.shape[1]);
  if (k < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("IS needs at least 2 classes, got ", k));
  }
  if (options.splits < 1 || n < options.splits) {
    return absl::InvalidArgumentError(
        absl::StrCat("IS with ", options.splits,
                     " splits needs splits >= 1 "
                     "and at least that many samples, got ",
                     n));
  }
  if (n > int64_t{UINT32_MAX}) {
    return absl::InvalidArgumentError("IS: more than 2^32 samples");
  }
  PG_RETURN_IF_ERROR(CheckFinite(scores, "IS class scores"));
  const bool logits = options.input == ClassScores::kLogits;
  if (!logits) {
    for (int64_t i = 0; i < n; ++i) {
      const float* row = scores.data + i * k;
      double sum = 0;
      for (int c = 0; c < k; ++c) {
        if (row[c] < 0) {
          return absl::InvalidArgumentError(absl::StrCat(
              "IS probabilities: row ", i, " has a negative entry ", row[c]));
        }
        sum += row[c];
      }
      if (std::abs(sum - 1.0) > 1e-3) {
        return absl::InvalidArgumentError(absl::StrCat(
            "IS probabilities: row ", i, " sums to ", sum,
            " (pass ClassScores::kLogits for unnormalized scores)"));
      }
    }
  }
  std::vector<int64_t> order(n);
  if (options.shuffle) {
    Rng rng(options.seed);
    order = SampleWithoutReplacement(n, n, &rng);
  } else {
    std::iota(order.begin(), order.end(), int64_t{0});
  }
  // log p(y|x) of one row in float64; recomputed in both passes rather than
  // holding N x K doubles.
  std::vector<double> logp(k);
  auto row_log_probs = [&](int64_t row) {
    const float* x = scores.data + row * k;
    if (logits) {
      double mx = x[0];
      for (int c = 1; c < k; ++c) mx = std::max(mx, double{x[c]});
      double sum = 0;
      for (int c = 0; c < k; ++c) sum += std::exp(x[c] - mx);
      const double lse = mx + std::log(sum);
      for (int c = 0; c < k; ++c) logp[c] = x[c] - lse;
    } else {
      double sum = 0;
      for (int c = 0; c < k; ++c) sum += x[c];
      const double log_sum = std::log(sum);
      for (int c = 0; c < k; ++c) {
        logp[c] = x[c] > 0 ? std::log(double{x[c]}) - log_sum : -INFINITY;
      }
    }
  };
  IsResult result;
  std::vector<double> marginal(k), log_marginal(k);
  for (int s = 0; s < options.splits; ++s) {
    const int64_t lo = s * n / options.splits;
    const int64_t hi = (s + 1) * n / options.splits;
    std::fill(marginal.begin(), marginal.end(), 0.0);
    for (int64_t i = lo; i < hi; ++i) {
      row_log_probs(order[i]);
      for (int c = 0; c < k; ++c) marginal[c] += std::exp(logp[c]);
    }
    for (int c = 0; c < k; ++c) {
      log_marginal[c] = std::log(marginal[c] / static_cast<double>(hi - lo));
    }
    double kl_sum = 0;
    for (int64_t i = lo; i < hi; ++i) {
      row_log_probs(order[i]);
      for (int c = 0; c < k; ++c) {
        const double p = std::exp(logp[c]);
        if (p > 0) kl_sum += p * (logp[c] - log_marginal[c]);  // 0 log 0 = 0
      }
    }
    result.per_split.push_back(std::exp(kl_sum / static_cast<double>(hi - lo)));
  }
  MeanStd(result.per_split, &result.mean, &result.std);
  return result;
}

absl::Status SaveFeatureStats(const std::string& path,
                              const FeatureStats& stats) {
  PG_RETURN_IF_ERROR(ValidateFeatureStats(stats));
  std::vector<NamedArray> arrays;
  const int64_t d = stats.dim;
  PG_ASSIGN_OR_RETURN(NamedArray format, TextArray("format", kStatsFormat));
  PG_ASSIGN_OR_RETURN(NamedArray network, TextArray("network", stats.network));
  PG_ASSIGN_OR_RETURN(NamedArray dataset, TextArray("dataset", stats.dataset));
  PG_ASSIGN_OR_RETURN(NamedArray resolution,
                      MakeInt64Array("resolution", {1}, {stats.resolution}));
  PG_ASSIGN_OR_RETURN(NamedArray count,
                      MakeInt64Array("count", {1}, {stats.count}));
  PG_ASSIGN_OR_RETURN(NamedArray mean,
                      Float64BitsArray("mean_f64bits", {d}, stats.mean));
  PG_ASSIGN_OR_RETURN(NamedArray cov,
                      Float64BitsArray("cov_f64bits", {d, d}, stats.cov));
  for (NamedArray* a :
       {&format, &network, &dataset, &resolution, &count, &mean, &cov}) {
    arrays.push_back(std::move(*a));
  }
  return WriteTensorFile(path, arrays);
}

absl::StatusOr<FeatureStats> LoadFeatureStats(const std::string& path) {
  PG_ASSIGN_OR_RETURN(std::vector<NamedArray> arrays, ReadTensorFile(path));
  PG_ASSIGN_OR_RETURN(std::string format, ReadText(arrays, path, "format"));
  if (format != kStatsFormat) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": format '", format, "', expected '", kStatsFormat, "'"));
  }
  FeatureStats s;
  PG_ASSIGN_OR_RETURN(s.network, ReadText(arrays, path, "network"));
  PG_ASSIGN_OR_RETURN(s.dataset, ReadText(arrays, path, "dataset"));
  PG_ASSIGN_OR_RETURN(const int64_t resolution,
                      ReadScalar(arrays, path, "resolution"));
  PG_ASSIGN_OR_RETURN(s.count, ReadScalar(arrays, path, "count"));
  if (resolution < 0 || resolution > INT_MAX) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": resolution ", resolution));
  }
  s.resolution = static_cast<int>(resolution);
  const NamedArray* mean = FindArray(arrays, "mean_f64bits");
  if (mean == nullptr) return Missing(path, "mean_f64bits");
  if (mean->dims.size() != 1 || mean->dims[0] <= 0 || mean->dims[0] > kMaxDim) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": 'mean_f64bits' has shape ", ShapeToString(mean->dims)));
  }
  const int64_t d = mean->dims[0];
  s.dim = static_cast<int>(d);
  PG_ASSIGN_OR_RETURN(s.mean,
                      ReadFloat64Bits(arrays, path, "mean_f64bits", {d}));
  PG_ASSIGN_OR_RETURN(s.cov,
                      ReadFloat64Bits(arrays, path, "cov_f64bits", {d, d}));
  const absl::Status st = ValidateFeatureStats(s);
  if (!st.ok()) {
    return absl::Status(st.code(), absl::StrCat(path, ": ", st.message()));
  }
  return s;
}

absl::StatusOr<FeatureStats> LoadReferenceStats(const std::string& path,
                                                absl::string_view network,
                                                int resolution) {
  PG_ASSIGN_OR_RETURN(FeatureStats s, LoadFeatureStats(path));
  if (s.network != network || s.resolution != resolution) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " holds statistics of ", Describe(s),
                     ", but the features to compare come from network '",
                     network, "' at resolution ", resolution,
                     ": recompute the reference statistics with that network"));
  }
  return s;
}

}  // namespace paragan::eval

// Times the metrics at InceptionV3's size (dim 2048) on synthetic features:
//   bazel-bin/worker/eval/metrics_bench --n=10000 --dim=2048 --threads=2
// Reports wall seconds of the feature statistics (per set), of FID from two
// sets of statistics, and optionally of KID (--kid, torch-fidelity's 100
// subsets of 1000).
//
// OpenBLAS picks its kernels from the CPU it detects when the library loads;
// on CPUs newer than its tables (e.g. a virtual "Intel Xeon Processor") that
// can be "Prescott" (SSE3), 5-10x slower. The line printed first says which;
// OPENBLAS_CORETYPE=Haswell (AVX2) or SkylakeX (AVX-512) in the environment
// overrides it.

#include <cblas.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "common/rng.h"
#include "worker/eval/metrics.h"

ABSL_FLAG(int, n, 10000, "samples per set");
ABSL_FLAG(int, dim, 2048, "feature dimension");
ABSL_FLAG(int, threads, 2, "OpenBLAS threads");
ABSL_FLAG(int, repeats, 3, "timed FID repetitions (the best is reported)");
ABSL_FLAG(bool, kid, false, "also time KID (100 subsets of 1000)");

namespace {

double Seconds(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
      .count();
}

// ReLU(z W + noise) with z of rank 256: a decaying spectrum and many
// near-zero directions, roughly like pool3 activations.
std::vector<float> SyntheticFeatures(int n, int dim, uint64_t seed,
                                     float shift) {
  constexpr int kRank = 256;
  paragan::Rng rng(seed);
  std::vector<float> z(static_cast<size_t>(n) * kRank), w(kRank * dim);
  for (float& v : z) v = rng.Normal();
  for (float& v : w) v = rng.Normal() / std::sqrt(float{kRank});
  std::vector<float> x(static_cast<size_t>(n) * dim);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, dim, kRank, 1.0f,
              z.data(), kRank, w.data(), dim, 0.0f, x.data(), dim);
  for (float& v : x) v = std::max(v + 0.1f * rng.Normal() + shift, 0.0f);
  return x;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const int n = absl::GetFlag(FLAGS_n), dim = absl::GetFlag(FLAGS_dim);
  openblas_set_num_threads(absl::GetFlag(FLAGS_threads));
  const std::string core = openblas_get_corename();
  std::printf("OpenBLAS core: %s\n", core.c_str());
  if (core == "Prescott" && __builtin_cpu_supports("avx2")) {
    std::printf(
        "warning: OpenBLAS did not recognize this AVX2 CPU; rerun with "
        "OPENBLAS_CORETYPE=Haswell (or SkylakeX with AVX-512)\n");
  }
  using paragan::eval::FeatureStats;
  const std::vector<float> xa = SyntheticFeatures(n, dim, 1, 0.0f);
  const std::vector<float> xb = SyntheticFeatures(n, dim, 2, 0.05f);
  const paragan::eval::FeatureMatrix a{xa.data(), {n, dim}};
  const paragan::eval::FeatureMatrix b{xb.data(), {n, dim}};

  auto start = std::chrono::steady_clock::now();
  auto sa = paragan::eval::ComputeFeatureStats(a, {"synthetic", "a", 299});
  const double stats_s = Seconds(start);
  auto sb = paragan::eval::ComputeFeatureStats(b, {"synthetic", "b", 299});
  if (!sa.ok() || !sb.ok()) {
    std::fprintf(stderr, "%s\n",
                 (sa.ok() ? sb.status() : sa.status()).ToString().c_str());
    return 1;
  }
  double best = 1e30, fid = 0;
  for (int r = 0; r < absl::GetFlag(FLAGS_repeats); ++r) {
    start = std::chrono::steady_clock::now();
    auto f = paragan::eval::Fid(*sa, *sb);
    best = std::min(best, Seconds(start));
    if (!f.ok()) {
      std::fprintf(stderr, "%s\n", f.status().ToString().c_str());
      return 1;
    }
    fid = *f;
  }
  std::printf(
      "n %d dim %d threads %d: stats %.3f s per set, FID %.3f s (best of %d), "
      "FID = %.6g\n",
      n, dim, absl::GetFlag(FLAGS_threads), stats_s, best,
      absl::GetFlag(FLAGS_repeats), fid);
  if (absl::GetFlag(FLAGS_kid)) {
    start = std::chrono::steady_clock::now();
    auto kid = paragan::eval::Kid(a, b);
    if (!kid.ok()) {
      std::fprintf(stderr, "%s\n", kid.status().ToString().c_str());
      return 1;
    }
    std::printf("KID %.3f s (100 x 1000): %.6g +- %.3g\n", Seconds(start),
                kid->mean, kid->std);
  }
  return 0;
}

#include "worker/eval/metrics.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "common/rng.h"
#include "common/tensor.h"
#include "common/tensor_io.h"

// Reference values come from tests/eval/make_metrics_fixture.py (NumPy 1.24,
// SciPy 1.10: pytorch-fid's FID, torch-fidelity's KID and IS) on the same
// float32 features; its docstring lists the arrays.

namespace paragan::eval {
namespace {

constexpr double kTol = 1e-3;  // relative, the target agreement with SciPy

// Worst relative error per metric (and where), printed when the test binary
// ends.
std::map<std::string, std::pair<double, std::string>>& WorstErrors() {
  static auto* m = new std::map<std::string, std::pair<double, std::string>>;
  return *m;
}

double RelErr(double got, double want) {
  return std::abs(got - want) / std::max(std::abs(want), 1e-300);
}

void ExpectClose(const std::string& metric, double got, double want,
                 const std::string& what, double tol = kTol) {
  const double e = RelErr(got, want);
  auto& worst = WorstErrors()[metric];
  if (e >= worst.first) worst = {e, what};
  EXPECT_LT(e, tol) << metric << " " << what << ": got " << got << ", want "
                    << want;
}

class ReportEnvironment : public ::testing::Environment {
 public:
  void TearDown() override {
    for (const auto& [metric, worst] : WorstErrors()) {
      std::printf("worst relative error: %-18s %.3g (%s)\n", metric.c_str(),
                  worst.first, worst.second.c_str());
    }
  }
};
const auto* const kReport =
    ::testing::AddGlobalTestEnvironment(new ReportEnvironment);

const std::map<std::string, NamedArray>& Fixture() {
  static const auto* fixture = [] {
    auto* m = new std::map<std::string, NamedArray>;
    const char* src = std::getenv("TEST_SRCDIR");
    const std::string path = std::string(src ? src : ".") +
                             "/paragan/tests/eval/metrics_fixture.pgt";
    auto arrays = ReadTensorFile(path);
    PG_CHECK_OK(arrays.status());
    for (NamedArray& a : *arrays) (*m)[a.name] = std::move(a);
    return m;
  }();
  return *fixture;
}

const NamedArray& Array(const std::string& name) {
  auto it = Fixture().find(name);
  PG_CHECK(it != Fixture().end()) << "fixture lacks " << name;
  return it->second;
}

std::vector<double> F64(const std::string& name) {
  auto bits = ToInt64Vector(Array(name));
  PG_CHECK_OK(bits.status());
  std::vector<double> v(bits->size());
  std::memcpy(v.data(), bits->data(), v.size() * sizeof(double));
  return v;
}
double Scalar(const std::string& name) { return F64(name).at(0); }

// A float32 matrix that owns its values.
struct Owned {
  std::vector<float> values;
  Shape shape;
  FeatureMatrix view() const { return {values.data(), shape}; }
};

Owned Features(const std::string& name) {
  auto v = ToFloatVector(Array(name));
  PG_CHECK_OK(v.status());
  return {*v, Array(name).dims};
}

std::vector<std::vector<int64_t>> Subsets(const std::string& name) {
  const NamedArray& a = Array(name);
  auto v = ToInt64Vector(a);
  PG_CHECK_OK(v.status());
  std::vector<std::vector<int64_t>> out;
  for (int64_t s = 0; s < a.dims[0]; ++s) {
    out.emplace_back(v->begin() + s * a.dims[1],
                     v->begin() + (s + 1) * a.dims[1]);
  }
  return out;
}

const FeatureStatsInfo kInfo{"test_net", "fixture", 32};

FeatureStats Stats(const Owned& f, FeatureStatsInfo info = kInfo) {
  auto s = ComputeFeatureStats(f.view(), info);
  PG_CHECK_OK(s.status());
  return *std::move(s);
}

double Trace(const FeatureStats& s) {
  double t = 0;
  for (int i = 0; i < s.dim; ++i) t += s.cov[i * s.dim + i];
  return t;
}

std::string TmpPath(const std::string& name) {
  const char* d = std::getenv("TEST_TMPDIR");
  return std::string(d ? d : "/tmp") + "/" + name;
}

const std::vector<std::string> kFidCases = {"basic", "singular", "singular_one",
                                            "ill"};

// --- Feature statistics ---------------------------------------------------

TEST(FeatureStatsTest, MatchNumpyMeanAndCov) {
  for (const std::string c : {"basic", "ill"}) {
    const FeatureStats s = Stats(Features(c + ".a"));
    const std::vector<double> mean = F64(c + ".mean_a");
    const std::vector<double> cov = F64(c + ".cov_a");
    ASSERT_EQ(s.mean.size(), mean.size());
    ASSERT_EQ(s.cov.size(), cov.size());
    double scale = 0, err = 0;
    for (size_t i = 0; i < cov.size(); ++i) {
      scale = std::max(scale, std::abs(cov[i]));
      err = std::max(err, std::abs(s.cov[i] - cov[i]));
    }
    EXPECT_LT(err, 1e-12 * scale) << c;
    for (size_t i = 0; i < mean.size(); ++i) {
      EXPECT_NEAR(s.mean[i], mean[i], 1e-12 * (1 + std::abs(mean[i]))) << c;
    }
    EXPECT_EQ(s.count, Array(c + ".a").dims[0]);
    EXPECT_EQ(s.dim, 64);
    EXPECT_EQ(s.network, "test_net");
    EXPECT_EQ(s.resolution, 32);
  }
}

TEST(FeatureStatsTest, BatchesGiveTheSameStatsAsOnePass) {
  const Owned f = Features("basic.a");
  const FeatureStats whole = Stats(f);
  FeatureStatsAccumulator acc(64);
  for (int64_t start = 0; start < f.shape[0]; start += 7) {
    const int64_t rows = std::min<int64_t>(7, f.shape[0] - start);
    ASSERT_TRUE(acc.Add({f.values.data() + start * 64, {rows, 64}}).ok());
  }
  auto batched = acc.Finish(kInfo);
  ASSERT_TRUE(batched.ok()) << batched.status();
  for (size_t i = 0; i < whole.cov.size(); ++i) {
    EXPECT_NEAR(batched->cov[i], whole.cov[i], 1e-12);
  }
  for (int i = 0; i < 64; ++i) {
    EXPECT_NEAR(batched->mean[i], whole.mean[i], 1e-12);
  }
}

// A large common offset must not cancel the variance (as E[xx^T] - mu mu^T
// would in float64 once offset^2 / variance nears 1e16).
TEST(FeatureStatsTest, LargeOffsetKeepsTheVariance) {
  const int n = 3000, d = 3;
  std::vector<float> x(n * d);
  Rng rng(7);
  for (int i = 0; i < n; ++i) {
    x[i * d + 0] = 1e6f + 0.0625f * (i % 2);  // exact in float32
    x[i * d + 1] = 1e3f + rng.Normal() * 1e-3f;
    x[i * d + 2] = rng.Normal();
  }
  FeatureStatsAccumulator acc(d);
  for (int start = 0; start < n; start += 1000) {
    ASSERT_TRUE(acc.Add({x.data() + start * d, {1000, d}}).ok());
  }
  auto s = acc.Finish(kInfo);
  ASSERT_TRUE(s.ok());
  for (int c = 0; c < d; ++c) {
    long double mean = 0, var = 0;
    for (int i = 0; i < n; ++i) mean += x[i * d + c];
    mean /= n;
    for (int i = 0; i < n; ++i) {
      var += (x[i * d + c] - mean) * (x[i * d + c] - mean);
    }
    var /= n - 1;
    EXPECT_NEAR(s->cov[c * d + c], static_cast<double>(var),
                1e-9 * static_cast<double>(var))
        << c;
  }
}

TEST(FeatureStatsTest, RefusesTooFewSamples) {
  std::vector<float> one(64, 1.0f);
  auto s = ComputeFeatureStats({one.data(), {1, 64}}, kInfo);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("at least 2 samples"), std::string::npos)
      << s.status();
  EXPECT_NE(s.status().message().find("got 1"), std::string::npos);
  EXPECT_FALSE(ComputeFeatureStats({one.data(), {0, 64}}, kInfo).ok());

  FeatureStats stats = Stats(Features("basic.a"));
  stats.count = 1;
  auto fid = Fid(stats, stats);
  ASSERT_FALSE(fid.ok());
  EXPECT_NE(fid.status().message().find("at least 2"), std::string::npos)
      << fid.status();
}

TEST(FeatureStatsTest, RefusesWrongShapesAndValues) {
  std::vector<float> v(128, 0.5f);
  for (const Shape& bad :
       {Shape{128}, Shape{2, 8, 8}, Shape{128, 0}, Shape{-1, 64}, Shape{}}) {
    auto s = ComputeFeatureStats({v.data(), bad}, kInfo);
    ASSERT_FALSE(s.ok()) << ShapeToString(bad);
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(s.status().message().find("[N, dim]"), std::string::npos)
        << s.status();
  }
  EXPECT_FALSE(ComputeFeatureStats({nullptr, {2, 64}}, kInfo).ok());

  FeatureStatsAccumulator acc(64);
  auto st = acc.Add({v.data(), {4, 32}});
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("dim 32"), std::string::npos) << st;
  v[70] = std::nanf("");
  st = acc.Add({v.data(), {2, 64}});
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("row 1, column 6"), std::string::npos) << st;
  EXPECT_EQ(acc.count(), 0);

  Tensor t = Tensor::Host({4, 16});
  auto m = FeatureMatrixOf(t);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->data, t.data());
  EXPECT_FALSE(FeatureMatrixOf(Tensor::Host({64})).ok());
}

// --- FID -------------------------------------------------------------------

TEST(FidTest, SetAgainstItselfIsZero) {
  FidOptions options;
  options.allow_rank_deficient = true;
  for (const std::string& c : kFidCases) {
    for (const char* side : {".a", ".b"}) {
      const FeatureStats s = Stats(Features(c + side));
      auto fid = Fid(s, s, options);
      ASSERT_TRUE(fid.ok()) << fid.status();
      EXPECT_LT(std::abs(*fid), 1e-6 * Trace(s)) << c << side;
    }
  }
}

TEST(FidTest, MatchesPytorchFidOnScipy) {
  FidOptions options;
  options.allow_rank_deficient = true;  // the singular cases
  for (const std::string& c : kFidCases) {
    const FeatureStats a = Stats(Features(c + ".a"));
    const FeatureStats b = Stats(Features(c + ".b"));
    const double want = Scalar(c + ".fid");
    auto ab = Fid(a, b, options);
    auto ba = Fid(b, a, options);
    ASSERT_TRUE(ab.ok()) << ab.status();
    ASSERT_TRUE(ba.ok()) << ba.status();
    ExpectClose("FID vs SciPy", *ab, want, c);
    ExpectClose("FID vs SciPy", *ba, want, c + " (b, a)");
    // Against 40-digit arithmetic, which SciPy itself misses by up to 3e-7.
    const double exact = Scalar(c + ".fid_exact");
    ExpectClose("FID vs 40 digits", *ab, exact, c, 1e-7);
    ExpectClose("FID vs 40 digits", *ba, exact, c + " (b, a)", 1e-7);
  }
}

TEST(FidTest, RefusesRankDeficientStatsByDefault) {
  const FeatureStats a = Stats(Features("singular_one.a"));  // N 300
  const FeatureStats b = Stats(Features("singular_one.b"));  // N 40
  auto fid = Fid(a, b);
  ASSERT_FALSE(fid.ok());
  EXPECT_EQ(fid.status().code(), absl::StatusCode::kFailedPrecondition);
  const std::string msg(fid.status().message());
  EXPECT_NE(msg.find("40 samples"), std::string::npos) << msg;
  EXPECT_NE(msg.find("at least 65"), std::string::npos) << msg;
  EXPECT_NE(msg.find("allow_rank_deficient"), std::string::npos) << msg;
  EXPECT_TRUE(Fid(a, a).ok());
}

TEST(FidTest, RefusesMismatchedStats) {
  const Owned f = Features("basic.a");
  const FeatureStats a = Stats(f, {"inception_v3", "real", 299});
  struct Case {
    FeatureStats b;
    std::string expect;
  };
  std::vector<Case> cases = {
      {Stats(f, {"fmnist_cnn", "fake", 299}), "fmnist_cnn"},
      {Stats(f, {"inception_v3", "fake", 32}), "resolution 32"},
  };
  // Same metadata, other dim.
  Owned half;
  for (int64_t r = 0; r < f.shape[0]; ++r) {
    half.values.insert(half.values.end(), f.values.begin() + r * 64,
                       f.values.begin() + r * 64 + 32);
  }
  half.shape = {f.shape[0], 32};
  cases.push_back({Stats(half, {"inception_v3", "fake", 299}), "dim 32"});
  for (const Case& c : cases) {
    auto fid = Fid(a, c.b);
    ASSERT_FALSE(fid.ok()) << c.expect;
    const std::string msg(fid.status().message());
    EXPECT_NE(msg.find(c.expect), std::string::npos) << msg;
    EXPECT_NE(msg.find("'inception_v3' at resolution 299 (dim 64"),
              std::string::npos)
        << msg;
  }
  // A different dataset is what FID is for.
  EXPECT_TRUE(Fid(a, Stats(f, {"inception_v3", "other", 299})).ok());
  // Malformed stats.
  FeatureStats bad = a;
  bad.cov.pop_back();
  EXPECT_FALSE(Fid(a, bad).ok());
  bad = a;
  bad.cov[0] = -1;
  EXPECT_FALSE(Fid(a, bad).ok());
}

// --- KID -------------------------------------------------------------------

TEST(KidTest, MatchesTorchFidelityOnGivenSubsets) {
  const Owned a = Features("basic.a"), b = Features("basic.b");
  auto kid = KidOnSubsets(a.view(), b.view(), Subsets("kid.subsets_a"),
                          Subsets("kid.subsets_b"));
  ASSERT_TRUE(kid.ok()) << kid.status();
  const std::vector<double> want = F64("kid.mmd");
  ASSERT_EQ(kid->per_subset.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    ExpectClose("KID vs SciPy", kid->per_subset[i], want[i],
                "subset " + std::to_string(i));
  }
  ExpectClose("KID vs SciPy", kid->mean, Scalar("kid.mean"), "mean");
  ExpectClose("KID vs SciPy", kid->std, Scalar("kid.std"), "std");
}

TEST(KidTest, MatchesOnWholeSets) {
  for (const auto& [c, key] : {std::pair{"basic", "kid_full.mmd"},
                               std::pair{"singular", "kid_singular.mmd"}}) {
    const Owned a = Features(std::string(c) + ".a");
    const Owned b = Features(std::string(c) + ".b");
    std::vector<int64_t> all_a(a.shape[0]), all_b(b.shape[0]);
    for (size_t i = 0; i < all_a.size(); ++i) all_a[i] = i;
    for (size_t i = 0; i < all_b.size(); ++i) all_b[i] = i;
    auto kid = KidOnSubsets(a.view(), b.view(), {all_a}, {all_b});
    ASSERT_TRUE(kid.ok()) << kid.status();
    ExpectClose("KID vs SciPy", kid->mean, Scalar(key), key);
    EXPECT_EQ(kid->std, 0.0);
  }
}

TEST(KidTest, SamplerDrawsDistinctUniformIndices) {
  Rng rng(3);
  const int64_t n = 50, k = 20, draws = 5000;
  std::vector<int> hits(n, 0);
  for (int t = 0; t < draws; ++t) {
    const std::vector<int64_t> s = SampleWithoutReplacement(n, k, &rng);
    ASSERT_EQ(s.size(), static_cast<size_t>(k));
    ASSERT_EQ(std::set<int64_t>(s.begin(), s.end()).size(), s.size());
    for (int64_t i : s) {
      ASSERT_GE(i, 0);
      ASSERT_LT(i, n);
      ++hits[i];
    }
  }
  // Each index is drawn with probability k/n: 2000 expected, sd ~35.
  for (int64_t i = 0; i < n; ++i) {
    EXPECT_NEAR(hits[i], draws * k / n, 200) << i;
  }
  Rng r1(11), r2(11), r3(12);
  EXPECT_EQ(SampleWithoutReplacement(1000, 100, &r1),
            SampleWithoutReplacement(1000, 100, &r2));
  EXPECT_NE(SampleWithoutReplacement(1000, 100, &r1),
            SampleWithoutReplacement(1000, 100, &r3));
  Rng r4(1);
  std::vector<int64_t> perm = SampleWithoutReplacement(10, 10, &r4);
  std::sort(perm.begin(), perm.end());
  for (int i = 0; i < 10; ++i) EXPECT_EQ(perm[i], i);
}

TEST(KidTest, SeededSubsetsAreTheSamplersDraws) {
  const Owned a = Features("basic.a"), b = Features("basic.b");
  KidOptions options;
  options.subsets = 4;
  options.subset_size = 50;
  options.seed = 99;
  auto kid = Kid(a.view(), b.view(), options);
  ASSERT_TRUE(kid.ok()) << kid.status();
  Rng rng(99);
  std::vector<std::vector<int64_t>> sa, sb;
  for (int s = 0; s < 4; ++s) {
    sa.push_back(SampleWithoutReplacement(300, 50, &rng));
    sb.push_back(SampleWithoutReplacement(200, 50, &rng));
  }
  auto again = KidOnSubsets(a.view(), b.view(), sa, sb);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(kid->per_subset, again->per_subset);
  EXPECT_EQ(kid->per_subset.size(), 4u);
  EXPECT_GT(kid->std, 0);
  // The same set against itself: unbiased, so about 0 (both signs).
  auto self = Kid(a.view(), a.view(), options);
  ASSERT_TRUE(self.ok());
  EXPECT_LT(std::abs(self->mean), 0.5 * kid->mean);
}

TEST(KidTest, RefusesBadInputs) {
  const Owned a = Features("basic.a"), b = Features("basic.b");
  KidOptions options;  // subset_size 1000 > 300 and 200
  auto kid = Kid(a.view(), b.view(), options);
  ASSERT_FALSE(kid.ok());
  std::string msg(kid.status().message());
  EXPECT_NE(msg.find("subset size 1000 is larger than set a (300 samples)"),
            std::string::npos)
      << msg;
  options.subset_size = 250;
  kid = Kid(a.view(), b.view(), options);
  ASSERT_FALSE(kid.ok());
  msg = std::string(kid.status().message());
  EXPECT_NE(msg.find("set b (200 samples)"), std::string::npos) << msg;
  options.subset_size = 1;
  EXPECT_FALSE(Kid(a.view(), b.view(), options).ok());
  options.subset_size = 10;
  options.subsets = 0;
  EXPECT_FALSE(Kid(a.view(), b.view(), options).ok());

  const Owned other = Features("basic.a");
  const FeatureMatrix narrow{other.values.data(), {600, 32}};
  kid = KidOnSubsets(a.view(), narrow, {{0, 1}}, {{0, 1}});
  ASSERT_FALSE(kid.ok());
  EXPECT_NE(kid.status().message().find("different dims"), std::string::npos);
  EXPECT_FALSE(KidOnSubsets(a.view(), b.view(), {{0, 1}}, {{0, 200}}).ok());
  EXPECT_FALSE(KidOnSubsets(a.view(), b.view(), {{0, 0}}, {{0, 1}}).ok());
  EXPECT_FALSE(KidOnSubsets(a.view(), b.view(), {{0, 1}}, {}).ok());
  EXPECT_FALSE(
      KidOnSubsets({a.values.data(), {300}}, b.view(), {{0, 1}}, {{0, 1}})
          .ok());
}

// --- IS --------------------------------------------------------------------

TEST(InceptionScoreTest, MatchesTorchFidelityFromLogits) {
  const Owned logits = Features("is.logits");
  for (int splits : {10, 3}) {
    IsOptions options;
    options.splits = splits;
    options.shuffle = false;
    auto is = InceptionScore(logits.view(), options);
    ASSERT_TRUE(is.ok()) << is.status();
    const std::string key = "is.s" + std::to_string(splits);
    const std::vector<double> want = F64(key + ".scores");
    ASSERT_EQ(is->per_split.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      ExpectClose("IS vs SciPy", is->per_split[i], want[i], key);
    }
    ExpectClose("IS vs SciPy", is->mean, Scalar(key + ".mean"), key + " mean");
    ExpectClose("IS vs SciPy", is->std, Scalar(key + ".std"), key + " std");
  }
}

TEST(InceptionScoreTest, MatchesScipyEntropyFromProbabilities) {
  IsOptions options;
  options.input = ClassScores::kProbabilities;
  options.shuffle = false;
  auto is = InceptionScore(Features("is.probs").view(), options);
  ASSERT_TRUE(is.ok()) << is.status();
  const std::vector<double> want = F64("is.probs.s10.scores");
  for (size_t i = 0; i < want.size(); ++i) {
    ExpectClose("IS vs SciPy", is->per_split[i], want[i], "probs");
  }
  ExpectClose("IS vs SciPy", is->mean, Scalar("is.probs.s10.mean"),
              "probs mean");
  ExpectClose("IS vs SciPy", is->std, Scalar("is.probs.s10.std"), "probs std");
}

TEST(InceptionScoreTest, ShuffleIsSeededAndOnlyReordersRows) {
  const Owned logits = Features("is.logits");
  IsOptions options;
  options.splits = 1;
  options.shuffle = false;
  auto plain = InceptionScore(logits.view(), options);
  options.shuffle = true;
  auto shuffled = InceptionScore(logits.view(), options);
  ASSERT_TRUE(plain.ok() && shuffled.ok());
  EXPECT_NEAR(plain->mean, shuffled->mean, 1e-12 * plain->mean);
  options.splits = 10;
  auto s1 = InceptionScore(logits.view(), options);
  auto s2 = InceptionScore(logits.view(), options);
  ASSERT_TRUE(s1.ok() && s2.ok());
  EXPECT_EQ(s1->per_split, s2->per_split);
  options.shuffle = false;
  auto unshuffled = InceptionScore(logits.view(), options);
  EXPECT_NE(s1->per_split, unshuffled->per_split);
}

TEST(InceptionScoreTest, RefusesBadInputs) {
  const Owned logits = Features("is.logits");
  IsOptions options;
  options.splits = 501;
  auto is = InceptionScore(logits.view(), options);
  ASSERT_FALSE(is.ok());
  EXPECT_NE(is.status().message().find("501 splits"), std::string::npos);
  options.splits = 0;
  EXPECT_FALSE(InceptionScore(logits.view(), options).ok());
  options.splits = 10;
  EXPECT_FALSE(InceptionScore({logits.values.data(), {5000, 1}}, options).ok());
  EXPECT_FALSE(InceptionScore({logits.values.data(), {5000}}, options).ok());
  options.input = ClassScores::kProbabilities;
  is = InceptionScore(logits.view(), options);  // logits are not normalized
  ASSERT_FALSE(is.ok());
  EXPECT_NE(is.status().message().find("kLogits"), std::string::npos);
  Owned probs = Features("is.probs");
  probs.values[3] = -probs.values[3];
  is = InceptionScore(probs.view(), options);
  ASSERT_FALSE(is.ok());
  EXPECT_NE(is.status().message().find("negative"), std::string::npos);
}

// --- Files -----------------------------------------------------------------

TEST(FeatureStatsFileTest, RoundTripsBitExactly) {
  const FeatureStats s =
      Stats(Features("ill.a"), {"inception_v3", "fmnist/train", 299});
  const std::string path = TmpPath("ill.stats.pgt");
  ASSERT_TRUE(SaveFeatureStats(path, s).ok());
  auto back = LoadFeatureStats(path);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->count, s.count);
  EXPECT_EQ(back->dim, s.dim);
  EXPECT_EQ(back->mean, s.mean);
  EXPECT_EQ(back->cov, s.cov);
  EXPECT_EQ(back->network, s.network);
  EXPECT_EQ(back->dataset, s.dataset);
  EXPECT_EQ(back->resolution, s.resolution);
  auto ref = LoadReferenceStats(path, "inception_v3", 299);
  ASSERT_TRUE(ref.ok()) << ref.status();
  auto fid = Fid(*ref, s);
  ASSERT_TRUE(fid.ok());
  EXPECT_LT(std::abs(*fid), 1e-6 * Trace(s));
}

TEST(FeatureStatsFileTest, RefusesAnotherNetworkOrResolution) {
  const FeatureStats s =
      Stats(Features("basic.a"), {"inception_v3", "fmnist/train", 299});
  const std::string path = TmpPath("basic.stats.pgt");
  ASSERT_TRUE(SaveFeatureStats(path, s).ok());
  for (const auto& [network, resolution] :
       {std::pair{"fmnist_cnn", 299}, std::pair{"inception_v3", 32}}) {
    auto ref = LoadReferenceStats(path, network, resolution);
    ASSERT_FALSE(ref.ok());
    const std::string msg(ref.status().message());
    EXPECT_NE(msg.find("'inception_v3' at resolution 299"), std::string::npos)
        << msg;
    EXPECT_NE(msg.find(absl::StrCat("network '", network, "' at resolution ",
                                    resolution)),
              std::string::npos)
        << msg;
  }
}

TEST(FeatureStatsFileTest, RefusesCorruptAndForeignFiles) {
  const FeatureStats s = Stats(Features("basic.b"));
  const std::string path = TmpPath("corrupt.stats.pgt");
  ASSERT_TRUE(SaveFeatureStats(path, s).ok());
  auto bytes = ReadFileToString(path);
  ASSERT_TRUE(bytes.ok());
  (*bytes)[bytes->size() / 2] ^= 0x10;
  ASSERT_TRUE(WriteFileAtomically(path, *bytes).ok());
  EXPECT_FALSE(LoadFeatureStats(path).ok());

  // A tensor file of something else (the fixture itself).
  const char* src = std::getenv("TEST_SRCDIR");
  auto foreign = LoadFeatureStats(std::string(src ? src : ".") +
                                  "/paragan/tests/eval/metrics_fixture.pgt");
  ASSERT_FALSE(foreign.ok());
  EXPECT_NE(foreign.status().message().find("not a FeatureStats file"),
            std::string::npos)
      << foreign.status();
  EXPECT_FALSE(LoadFeatureStats(TmpPath("missing.pgt")).ok());

  FeatureStats one = s;
  one.count = 1;
  EXPECT_FALSE(SaveFeatureStats(TmpPath("one.pgt"), one).ok());
}

}  // namespace
}  // namespace paragan::eval

#include "dataloader/datasets/sampler.h"

#include <algorithm>
#include <vector>

#include "dataloader/datasets/dataset.h"
#include "gtest/gtest.h"

namespace paragan {
namespace {

std::vector<int64_t> Take(EpochSampler* s, int batches, int batch_size) {
  std::vector<int64_t> all, batch;
  for (int b = 0; b < batches; ++b) {
    s->NextBatch(batch_size, &batch);
    EXPECT_EQ(batch.size(), static_cast<size_t>(batch_size));
    all.insert(all.end(), batch.begin(), batch.end());
  }
  return all;
}

TEST(EpochPermutationTest, IsAPermutationAndStable) {
  const std::vector<int64_t> p = EpochPermutation(1000, 42, 3);
  std::vector<int64_t> sorted = p;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 1000; ++i) ASSERT_EQ(sorted[i], i);
  EXPECT_EQ(p, EpochPermutation(1000, 42, 3));
  EXPECT_NE(p, EpochPermutation(1000, 42, 4));
  EXPECT_NE(p, EpochPermutation(1000, 43, 3));
  // Pinned so that the order never silently changes across platforms,
  // compilers or refactors (self-contained SplitMix64 + Fisher-Yates).
  EXPECT_EQ(EpochPermutation(10, 42, 0),
            (std::vector<int64_t>{6, 1, 8, 5, 2, 7, 4, 3, 9, 0}));
  EXPECT_EQ(EpochPermutation(1, 5, 9), std::vector<int64_t>{0});
}

TEST(EpochSamplerTest, Deterministic) {
  EpochSampler a(97, 11), b(97, 11), c(97, 12);
  const std::vector<int64_t> xa = Take(&a, 20, 16);
  EXPECT_EQ(xa, Take(&b, 20, 16));
  EXPECT_NE(xa, Take(&c, 20, 16));
}

TEST(EpochSamplerTest, EachIndexOncePerEpochAcrossBoundaries) {
  const int64_t n = 50;
  EpochSampler s(n, 3);
  // 7 does not divide 50: batches straddle epoch boundaries.
  const std::vector<int64_t> all = Take(&s, 50, 7);  // 350 = 7 epochs
  ASSERT_EQ(all.size(), 350u);
  for (int e = 0; e < 7; ++e) {
    std::vector<int64_t> epoch(all.begin() + e * n, all.begin() + (e + 1) * n);
    EXPECT_EQ(epoch, EpochPermutation(n, 3, e)) << "epoch " << e;
  }
  EXPECT_EQ(s.state().epoch, 7);
  EXPECT_EQ(s.state().cursor, 0);
}

TEST(EpochSamplerTest, ResumeEqualsUninterruptedRun) {
  EpochSampler full(37, 99);
  const std::vector<int64_t> expected = Take(&full, 30, 5);

  EpochSampler first(37, 99);
  std::vector<int64_t> got = Take(&first, 11, 5);
  const EpochSampler::State saved = first.state();
  EXPECT_EQ(saved.epoch, 1);
  EXPECT_EQ(saved.cursor, 55 - 37);

  EpochSampler resumed(37, 99);
  ASSERT_TRUE(resumed.SetState(saved).ok());
  const std::vector<int64_t> rest = Take(&resumed, 19, 5);
  got.insert(got.end(), rest.begin(), rest.end());
  EXPECT_EQ(got, expected);
}

TEST(EpochSamplerTest, SetStateValidates) {
  EpochSampler s(10, 0);
  EXPECT_FALSE(s.SetState({-1, 0}).ok());
  EXPECT_FALSE(s.SetState({0, 10}).ok());
  EXPECT_FALSE(s.SetState({0, -1}).ok());
  EXPECT_TRUE(s.SetState({5, 9}).ok());
  std::vector<int64_t> b;
  s.NextBatch(2, &b);
  EXPECT_EQ(b[0], EpochPermutation(10, 0, 5)[9]);
  EXPECT_EQ(b[1], EpochPermutation(10, 0, 6)[0]);
}

TEST(LoadBatchTest, MatchesSequentialGet) {
  std::unique_ptr<Dataset> ds = MakeSyntheticDataset(64, 3, 8, 5, 1);
  const int64_t per = 3 * 8 * 8;
  EpochSampler s(64, 2);
  std::vector<int64_t> indices;
  s.NextBatch(13, &indices);
  for (int threads : {1, 2, 3}) {
    std::vector<float> images(13 * per, 99.0f);
    std::vector<int> labels(13, -1);
    LoadBatch(*ds, indices, images.data(), labels.data(), threads);
    std::vector<float> expected(per);
    for (size_t i = 0; i < indices.size(); ++i) {
      int label = -1;
      ds->Get(indices[i], expected.data(), &label);
      ASSERT_EQ(labels[i], label);
      ASSERT_TRUE(std::equal(expected.begin(), expected.end(),
                             images.begin() + i * per));
    }
  }
  std::vector<float> images(13 * per);
  LoadBatch(*ds, indices, images.data(), nullptr);  // labels optional
}

}  // namespace
}  // namespace paragan

#include "common/placement.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

namespace paragan {
namespace {

std::vector<TensorSize> RandomTensors(int n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int64_t> size(0, 1 << 20);
  std::vector<TensorSize> out;
  for (int i = 0; i < n; ++i) {
    out.push_back(
        {"t" + std::to_string(i), size(gen) % 7 == 0 ? 64 : size(gen)});
  }
  return out;
}

TEST(PlacementTest, BalancedAndEveryTensorPlacedOnce) {
  for (int num_shards : {1, 2, 3, 4, 7}) {
    for (uint32_t seed : {1u, 2u, 3u}) {
      const std::vector<TensorSize> tensors = RandomTensors(50, seed);
      auto p = PlaceTensors(tensors, num_shards);
      ASSERT_TRUE(p.ok()) << p.status();
      ASSERT_EQ(p->shard_of.size(), tensors.size());
      ASSERT_EQ(p->load.size(), static_cast<size_t>(num_shards));
      // Each tensor on exactly one valid shard; loads add up.
      std::vector<int64_t> load(num_shards, 0);
      size_t listed = 0;
      for (size_t i = 0; i < tensors.size(); ++i) {
        ASSERT_GE(p->shard_of[i], 0);
        ASSERT_LT(p->shard_of[i], num_shards);
        load[p->shard_of[i]] += tensors[i].size;
      }
      for (int s = 0; s < num_shards; ++s) listed += p->TensorsOn(s).size();
      EXPECT_EQ(listed, tensors.size());
      EXPECT_EQ(load, p->load);
      int64_t largest = 0;
      for (const TensorSize& t : tensors) largest = std::max(largest, t.size);
      const auto [mn, mx] = std::minmax_element(load.begin(), load.end());
      EXPECT_LE(*mx, *mn + largest)
          << "shards=" << num_shards << " seed=" << seed;
    }
  }
}

TEST(PlacementTest, DeterministicAndIndependentOfInputOrder) {
  std::vector<TensorSize> tensors = RandomTensors(40, 9);
  auto a = PlaceTensors(tensors, 3);
  auto b = PlaceTensors(tensors, 3);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->shard_of, b->shard_of);
  // Another process may list the names in another order: same assignment
  // per name.
  std::vector<TensorSize> reversed(tensors.rbegin(), tensors.rend());
  auto c = PlaceTensors(reversed, 3);
  ASSERT_TRUE(c.ok());
  for (size_t i = 0; i < tensors.size(); ++i) {
    EXPECT_EQ(a->shard_of[i], c->shard_of[tensors.size() - 1 - i])
        << tensors[i].name;
  }
}

TEST(PlacementTest, TiesBrokenByNameThenLowestShard) {
  // Equal sizes: sorted by name, dealt round-robin from shard 0.
  auto p = PlaceTensors({{"c", 5}, {"a", 5}, {"b", 5}, {"big", 9}}, 2);
  ASSERT_TRUE(p.ok());
  // big -> 0 (load 9); a -> 1 (5); b -> 1 (10); c -> 0 (14).
  EXPECT_EQ(p->shard_of, (std::vector<int>{0, 1, 1, 0}));
  EXPECT_EQ(p->load, (std::vector<int64_t>{14, 10}));
}

TEST(PlacementTest, MoreShardsThanTensorsAndEmpty) {
  auto p = PlaceTensors({{"x", 3}}, 4);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->shard_of, std::vector<int>{0});
  EXPECT_TRUE(p->TensorsOn(3).empty());
  auto e = PlaceTensors({}, 2);
  ASSERT_TRUE(e.ok());
  EXPECT_TRUE(e->shard_of.empty());
}

TEST(PlacementTest, RejectsBadInput) {
  EXPECT_FALSE(PlaceTensors({{"x", 1}}, 0).ok());
  EXPECT_FALSE(PlaceTensors({{"x", -1}}, 1).ok());
  EXPECT_FALSE(PlaceTensors({{"x", 1}, {"x", 2}}, 2).ok());
}

}  // namespace
}  // namespace paragan

#include "server/placement.h"

#include <algorithm>
#include <numeric>
#include <set>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace paragan {

std::vector<int> Placement::TensorsOn(int shard) const {
  std::vector<int> out;
  for (size_t i = 0; i < shard_of.size(); ++i) {
    if (shard_of[i] == shard) out.push_back(static_cast<int>(i));
  }
  return out;
}

absl::StatusOr<Placement> PlaceTensors(const std::vector<TensorSize>& tensors,
                                       int num_shards) {
  if (num_shards < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_shards must be >= 1, got ", num_shards));
  }
  std::set<std::string> names;
  for (const TensorSize& t : tensors) {
    if (t.size < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor ", t.name, " has negative size ", t.size));
    }
    if (!names.insert(t.name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("duplicate tensor name ", t.name));
    }
  }
  std::vector<int> order(tensors.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int a, int b) {
    if (tensors[a].size != tensors[b].size) {
      return tensors[a].size > tensors[b].size;
    }
    return tensors[a].name < tensors[b].name;
  });
  Placement p;
  p.shard_of.assign(tensors.size(), 0);
  p.load.assign(num_shards, 0);
  for (int i : order) {
    // min_element returns the first minimum: the lowest shard id on ties.
    const int shard = static_cast<int>(
        std::min_element(p.load.begin(), p.load.end()) - p.load.begin());
    p.shard_of[i] = shard;
    p.load[shard] += tensors[i].size;
  }
  return p;
}

}  // namespace paragan

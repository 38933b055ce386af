#include "common/placement.h"

#include <algorithm>
#include <numeric>
#include <set>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/check.h"

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

absl::StatusOr<std::map<std::string, int>> PlaceNetwork(
    const std::vector<TableTensorSpec>& specs, int num_shards) {
  std::vector<TensorSize> sizes;
  for (const TableTensorSpec& s : specs) {
    sizes.push_back({s.name, NumElements(s.shape)});
  }
  PG_ASSIGN_OR_RETURN(Placement p, PlaceTensors(sizes, num_shards));
  std::map<std::string, int> out;
  for (size_t i = 0; i < specs.size(); ++i) out[specs[i].name] = p.shard_of[i];
  return out;
}

absl::StatusOr<std::vector<TableTensor>> TensorsOnShard(
    std::vector<TableTensor> all, int shard_id, int num_shards) {
  if (shard_id < 0 || shard_id >= num_shards) {
    return absl::InvalidArgumentError(absl::StrCat(
        "shard_id ", shard_id, " out of range for ", num_shards, " shards"));
  }
  std::vector<TableTensorSpec> specs;
  for (const TableTensor& t : all) specs.push_back(t.spec);
  PG_ASSIGN_OR_RETURN(auto place, PlaceNetwork(specs, num_shards));
  std::vector<TableTensor> out;
  for (TableTensor& t : all) {
    if (place.at(t.spec.name) == shard_id) out.push_back(std::move(t));
  }
  return out;
}

}  // namespace paragan

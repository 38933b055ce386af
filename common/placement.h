#ifndef PARAGAN_COMMON_PLACEMENT_H_
#define PARAGAN_COMMON_PLACEMENT_H_

// Deterministic, balanced placement of one table's named tensors over the
// parameter-server shards. Every process (each shard, each worker) computes
// the same answer from the same list of (name, size) pairs, so nothing about
// placement ever travels over the network.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/network_tensors.h"

namespace paragan {

struct TensorSize {
  std::string name;
  int64_t size = 0;  // elements (or bytes: any additive measure of load)
};

struct Placement {
  // shard_of[i] is the shard of tensors[i] (the input order).
  std::vector<int> shard_of;
  // Sum of the sizes placed on each shard.
  std::vector<int64_t> load;

  // Indices of the input tensors placed on `shard`, in input order.
  std::vector<int> TensorsOn(int shard) const;
};

// Longest-processing-time greedy: tensors sorted by size descending (ties by
// name ascending) each go to the least-loaded shard (ties: lowest shard id).
// This guarantees max(load) <= min(load) + max(size). Fails on
// num_shards < 1, a negative size or a duplicate name.
absl::StatusOr<Placement> PlaceTensors(const std::vector<TensorSize>& tensors,
                                       int num_shards);

// Shard of each tensor of a network's `specs` (by name), from PlaceTensors
// over element counts.
absl::StatusOr<std::map<std::string, int>> PlaceNetwork(
    const std::vector<TableTensorSpec>& specs, int num_shards);

// The tensors of a whole network (`all`, in layout order) placed on
// `shard_id`, in the same order.
absl::StatusOr<std::vector<TableTensor>> TensorsOnShard(
    std::vector<TableTensor> all, int shard_id, int num_shards);

}  // namespace paragan

#endif  // PARAGAN_COMMON_PLACEMENT_H_

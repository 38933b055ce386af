#ifndef PARAGAN_SERVER_SHARD_H_
#define PARAGAN_SERVER_SHARD_H_

// One parameter-server shard of a model: its slices of the G and D tables
// (from the model's initial weights and the deterministic placement), and
// its checkpoint file.

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/placement.h"
#include "server/table.h"
#include "worker/engine/backend.h"
#include "worker/engine/model.h"
#include "worker/engine/params.h"

namespace paragan {

// Every tensor of one network, parameters (trainable) then buffers, in the
// store's registration order: the table's full layout.
std::vector<TableTensorSpec> NetworkSpecs(ParamStore& store);

// Shard of each tensor of `specs` (by name), from PlaceTensors over element
// counts. Every process computes the same map.
absl::StatusOr<std::map<std::string, int>> PlaceNetwork(
    const std::vector<TableTensorSpec>& specs, int num_shards);

// The tensors of `store` placed on `shard_id`, with their current values, in
// layout order.
absl::StatusOr<std::vector<TableTensor>> ShardSlice(ParamStore& store,
                                                    int shard_id,
                                                    int num_shards);

struct ShardOptions {
  int shard_id = 0;
  int num_shards = 1;
  ModelConfig model;
  uint64_t seed = 0;  // initial weights: MakeModel(model).Initialize(seed)
  TableConfig g{kGeneratorTable, {}, {}};
  TableConfig d{kDiscriminatorTable, {}, {}};
  std::string checkpoint_dir;  // empty: no checkpoints
  int threads = 1;             // CPU threads of the Adam kernel
};

class ParameterShard {
 public:
  static absl::StatusOr<std::unique_ptr<ParameterShard>> Create(
      const ShardOptions& options);

  const ShardOptions& options() const { return options_; }
  ParameterTable& g() { return *g_; }
  ParameterTable& d() { return *d_; }
  std::vector<ParameterTable*> tables() { return {g_.get(), d_.get()}; }

  // <checkpoint_dir>/shard-<id>-of-<n>.pgt, or "" without a directory.
  std::string checkpoint_path() const;
  // Both tables in one file, written atomically with a CRC. A no-op
  // without a checkpoint directory.
  absl::Status Checkpoint() const;
  // Restores both tables from checkpoint_path() if that file exists (false
  // if it does not). A corrupt file, or one of another shard, model or
  // layout, is an error and changes nothing.
  absl::StatusOr<bool> RestoreIfPresent();

 private:
  ParameterShard(const ShardOptions& options, std::unique_ptr<Backend> backend)
      : options_(options), backend_(std::move(backend)) {}
  std::string Signature() const;

  const ShardOptions options_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<ParameterTable> g_, d_;
};

}  // namespace paragan

#endif  // PARAGAN_SERVER_SHARD_H_

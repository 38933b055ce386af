#ifndef PARAGAN_SERVER_SHARD_H_
#define PARAGAN_SERVER_SHARD_H_

// One parameter-server shard: its slices of the G and D tables (from the
// networks' initial values and the deterministic placement), and its
// checkpoint file. Knows tensors, not models.

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/network_init.h"
#include "server/table.h"

namespace paragan {

struct ShardOptions {
  int shard_id = 0;
  int num_shards = 1;
  // Both networks' layout and initial values (paragan_init's file); the
  // shard keeps the tensors common/placement.h places on it.
  NetworkInit network;
  TableConfig g{kGeneratorTable, {}, {}};
  TableConfig d{kDiscriminatorTable, {}, {}};
  std::string checkpoint_dir;  // empty: no checkpoints
  int threads = 1;             // OpenMP threads of the optimizer kernels
};

class ParameterShard {
 public:
  // The options' network tensors move into the tables (the shard keeps only
  // its slices).
  static absl::StatusOr<std::unique_ptr<ParameterShard>> Create(
      ShardOptions options);

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
  // if it does not). A corrupt file, or one of another shard, network
  // signature or layout, is an error and changes nothing.
  absl::StatusOr<bool> RestoreIfPresent();

 private:
  explicit ParameterShard(ShardOptions options)
      : options_(std::move(options)) {}
  std::string Signature() const;

  const ShardOptions options_;
  std::unique_ptr<ParameterTable> g_, d_;
};

}  // namespace paragan

#endif  // PARAGAN_SERVER_SHARD_H_

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
  // Checkpoint files kept: the newest at checkpoint_path(), the previous
  // ones at checkpoint_path() + ".1", ".2", ... (at least 1).
  int keep_checkpoints = 3;
  int threads = 1;  // OpenMP threads of the optimizer kernels
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
  // The checkpoint `age` checkpoints older than the newest (0: the newest).
  std::string checkpoint_path(int age) const;
  // Both tables in one file with a CRC, written in full beside the others
  // before the older files rotate (.1 -> .2, ...) and it takes the newest's
  // name: a failed write (a full disk) leaves every earlier file as it
  // was. A no-op without a checkpoint directory.
  absl::Status Checkpoint() const;

  struct Restored {
    std::string path;  // the file restored from; empty: none existed
    // Newer files that were skipped as corrupt or torn, with the reason.
    std::vector<std::string> skipped;
  };
  // Restores both tables from the newest intact checkpoint: a file that
  // fails its checksum or is truncated is skipped for the one before it. A
  // file of another shard, network signature or layout is an error, as is
  // finding only corrupt files; an error changes nothing.
  absl::StatusOr<Restored> RestoreNewestIntact();

 private:
  explicit ParameterShard(ShardOptions options)
      : options_(std::move(options)) {}
  std::string Signature() const;

  const ShardOptions options_;
  std::unique_ptr<ParameterTable> g_, d_;
};

}  // namespace paragan

#endif  // PARAGAN_SERVER_SHARD_H_

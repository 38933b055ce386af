#ifndef PARAGAN_WORKER_DISTRIBUTED_TABLE_SYNC_H_
#define PARAGAN_WORKER_DISTRIBUTED_TABLE_SYNC_H_

// A worker's view of one table (G or D) spread over the parameter-server
// shards: which tensors each shard holds (the placement every process
// computes, common/placement.h), merging pulled slices into the model's
// ParamStore, and host staging of a push (gradients of trainable tensors,
// values of buffers).

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "proto/paragan.pb.h"
#include "server/ps_client.h"
#include "server/table_names.h"
#include "worker/engine/params.h"

namespace paragan {

class TableLayout {
 public:
  // The placement of `store`'s tensors over `num_shards` shards.
  static absl::StatusOr<TableLayout> Create(const std::string& table,
                                            ParamStore& store, int num_shards);

  const std::string& table() const { return table_; }
  int num_shards() const { return static_cast<int>(shards_.size()); }
  // Tensors of shard `s`, in table (layout) order. May be empty.
  const std::vector<TableTensorSpec>& on_shard(int s) const {
    return shards_[s];
  }
  // OK when a shard's RegisterResponse lists exactly on_shard(s) (names,
  // shapes, trainable flags, order); otherwise FailedPrecondition naming the
  // first difference.
  absl::Status CheckShardInfo(int s, const v1::TableInfo& info) const;

 private:
  std::string table_;
  std::vector<std::vector<TableTensorSpec>> shards_;
};

// Uploads a slice pulled from one shard into `store`: parameter values and
// buffer values. The slice must hold exactly `expected` (every tensor, right
// shape, nothing else), checked before anything is written.
absl::Status MergePulled(const std::vector<TableTensorSpec>& expected,
                         const PulledTable& pulled, ParamStore* store);

// Host copies of everything one push carries: the gradient of every
// parameter and the value of every buffer of a store.
class PushStaging {
 public:
  // Downloads every Param::grad and every buffer of `store`.
  void Stage(ParamStore& store);
  // The tensors for one shard (gradients as GRADIENT, buffers as VALUE),
  // pointing into this staging, which they share (PushTensor::owner): a
  // later Stage leaves buffers still referenced alone and stages into new
  // ones.
  std::vector<PushTensor> ForShard(
      const std::vector<TableTensorSpec>& specs) const;
  int64_t bytes(const std::vector<TableTensorSpec>& specs) const;

 private:
  std::map<std::string, std::shared_ptr<std::vector<float>>> values_;
};

}  // namespace paragan

#endif  // PARAGAN_WORKER_DISTRIBUTED_TABLE_SYNC_H_

#ifndef PARAGAN_WORKER_DISTRIBUTED_BATCH_PROVIDER_H_
#define PARAGAN_WORKER_DISTRIBUTED_BATCH_PROVIDER_H_

// Where a worker's real batches come from: the local dataset (the same order
// as the single-process trainer: EpochSampler(size, seed) + LoadBatch), or
// the data service (dataloader/data_client.h) when it is built in. A
// prefetching wrapper loads the next batch in a background thread while the
// current one is being used.

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "common/tensor.h"
#include "dataloader/datasets/dataset.h"
#include "dataloader/datasets/sampler.h"

namespace paragan {

class BatchProvider {
 public:
  virtual ~BatchProvider() = default;
  // Fills a host tensor [B, C, H, W] and B labels. Blocking.
  virtual absl::Status Next(Tensor* host_images, std::vector<int>* labels) = 0;
  // Unblocks a pending Next (which then fails with CANCELLED).
  virtual void Cancel() {}
};

// Batches of `batch_size` from `dataset` in EpochSampler(size, seed) order,
// exactly as paragan_train draws them.
class LocalBatchProvider : public BatchProvider {
 public:
  LocalBatchProvider(std::unique_ptr<Dataset> dataset, int batch_size,
                     uint64_t seed, int threads);
  absl::Status Next(Tensor* host_images, std::vector<int>* labels) override;
  const DatasetInfo& info() const { return dataset_->info(); }

 private:
  std::unique_ptr<Dataset> dataset_;
  EpochSampler sampler_;
  int batch_size_, threads_;
  std::vector<int64_t> indices_;
};

// Runs `inner` ahead by up to `depth` batches in one background thread.
// Batches come out in the inner provider's order; an error is delivered in
// order too and ends the prefetching.
class PrefetchingProvider : public BatchProvider {
 public:
  PrefetchingProvider(std::unique_ptr<BatchProvider> inner, int depth = 2);
  ~PrefetchingProvider() override;
  absl::Status Next(Tensor* host_images, std::vector<int>* labels) override;
  void Cancel() override;
  // Seconds Next spent waiting for a batch that was not ready yet.
  double wait_seconds() const;

 private:
  struct Item {
    absl::Status status;
    Tensor images;
    std::vector<int> labels;
  };
  void Loop();

  std::unique_ptr<BatchProvider> inner_;
  const int depth_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Item> queue_;
  bool stop_ = false, failed_ = false;
  double wait_seconds_ = 0;
  std::thread thread_;
};

}  // namespace paragan

#endif  // PARAGAN_WORKER_DISTRIBUTED_BATCH_PROVIDER_H_

#include "worker/distributed/batch_provider.h"

#include <chrono>

namespace paragan {

LocalBatchProvider::LocalBatchProvider(std::unique_ptr<Dataset> dataset,
                                       int batch_size, uint64_t seed,
                                       int threads)
    : dataset_(std::move(dataset)),
      sampler_(dataset_->info().size, seed),
      batch_size_(batch_size),
      threads_(threads) {}

absl::Status LocalBatchProvider::Next(Tensor* host_images,
                                      std::vector<int>* labels) {
  const DatasetInfo& info = dataset_->info();
  *host_images =
      Tensor::Host({batch_size_, info.channels, info.height, info.width});
  sampler_.NextBatch(batch_size_, &indices_);
  labels->assign(batch_size_, 0);
  LoadBatch(*dataset_, indices_, host_images->data(), labels->data(), threads_);
  return absl::OkStatus();
}

PrefetchingProvider::PrefetchingProvider(std::unique_ptr<BatchProvider> inner,
                                         int depth)
    : inner_(std::move(inner)), depth_(depth < 1 ? 1 : depth) {
  thread_ = std::thread([this] { Loop(); });
}

PrefetchingProvider::~PrefetchingProvider() {
  Cancel();
  thread_.join();
}

void PrefetchingProvider::Cancel() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  inner_->Cancel();
}

void PrefetchingProvider::Loop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] {
        return stop_ || static_cast<int>(queue_.size()) < depth_;
      });
      if (stop_) return;
    }
    Item item;
    item.status = inner_->Next(&item.images, &item.labels);
    const bool ok = item.status.ok();
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back(std::move(item));
    }
    cv_.notify_all();
    if (!ok) return;
  }
}

absl::Status PrefetchingProvider::Next(Tensor* host_images,
                                       std::vector<int>* labels) {
  std::unique_lock<std::mutex> lock(mu_);
  if (failed_) return absl::FailedPreconditionError("batch source failed");
  const auto start = std::chrono::steady_clock::now();
  cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
  wait_seconds_ +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  if (queue_.empty()) return absl::CancelledError("batch provider cancelled");
  Item item = std::move(queue_.front());
  queue_.pop_front();
  if (!item.status.ok()) failed_ = true;
  lock.unlock();
  cv_.notify_all();
  if (!item.status.ok()) return item.status;
  *host_images = std::move(item.images);
  *labels = std::move(item.labels);
  return absl::OkStatus();
}

double PrefetchingProvider::wait_seconds() const {
  std::lock_guard<std::mutex> lock(mu_);
  return wait_seconds_;
}

}  // namespace paragan

#include "dataloader/datasets/sampler.h"

#include <algorithm>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "common/rng.h"

namespace paragan {

std::vector<int64_t> EpochPermutation(int64_t n, uint64_t seed, int64_t epoch) {
  PG_CHECK(n >= 0 && epoch >= 0) << "n=" << n << " epoch=" << epoch;
  std::vector<int64_t> perm(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) perm[i] = i;
  SplitMix64 rng(HashCombine(seed, static_cast<uint64_t>(epoch)));
  for (int64_t i = n - 1; i > 0; --i) {
    const auto j =
        static_cast<int64_t>(rng.Bounded(static_cast<uint64_t>(i + 1)));
    std::swap(perm[i], perm[j]);
  }
  return perm;
}

EpochSampler::EpochSampler(int64_t dataset_size, uint64_t seed)
    : size_(dataset_size), seed_(seed) {
  PG_CHECK(dataset_size > 0) << "EpochSampler needs a non-empty dataset";
}

void EpochSampler::EnsurePermutation() {
  if (permutation_epoch_ == state_.epoch) return;
  permutation_ = EpochPermutation(size_, seed_, state_.epoch);
  permutation_epoch_ = state_.epoch;
}

void EpochSampler::NextBatch(int batch_size, std::vector<int64_t>* indices) {
  PG_CHECK(batch_size > 0) << "batch_size " << batch_size;
  indices->resize(static_cast<size_t>(batch_size));
  for (int i = 0; i < batch_size; ++i) {
    EnsurePermutation();
    (*indices)[i] = permutation_[static_cast<size_t>(state_.cursor)];
    if (++state_.cursor == size_) {
      state_.cursor = 0;
      ++state_.epoch;
    }
  }
}

absl::Status EpochSampler::SetState(const State& state) {
  if (state.epoch < 0 || state.cursor < 0 || state.cursor >= size_) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid sampler state (epoch ", state.epoch, ", cursor ",
                     state.cursor, ") for a dataset of ", size_, " items"));
  }
  state_ = state;
  return absl::OkStatus();
}

void LoadBatch(const Dataset& dataset, const std::vector<int64_t>& indices,
               float* images, int* labels, int num_threads) {
  const DatasetInfo& info = dataset.info();
  const int64_t per_image = int64_t{info.channels} * info.height * info.width;
  const int64_t n = static_cast<int64_t>(indices.size());
  auto load = [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      dataset.Get(indices[i], images + i * per_image,
                  labels != nullptr ? labels + i : nullptr);
    }
  };
  const int64_t threads =
      std::max<int64_t>(1, std::min<int64_t>(num_threads, n));
  if (threads <= 1) {
    load(0, n);
    return;
  }
  std::vector<std::thread> workers;
  workers.reserve(static_cast<size_t>(threads - 1));
  for (int64_t t = 1; t < threads; ++t) {
    workers.emplace_back(load, n * t / threads, n * (t + 1) / threads);
  }
  load(0, n / threads);
  for (std::thread& w : workers) w.join();
}

}  // namespace paragan

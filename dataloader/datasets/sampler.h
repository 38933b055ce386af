#ifndef PARAGAN_DATALOADER_DATASETS_SAMPLER_H_
#define PARAGAN_DATALOADER_DATASETS_SAMPLER_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "dataloader/datasets/dataset.h"

namespace paragan {

// The permutation of [0, n) used for `epoch`: Fisher-Yates driven by
// SplitMix64 seeded from (seed, epoch). Identical on every platform.
std::vector<int64_t> EpochPermutation(int64_t n, uint64_t seed, int64_t epoch);

// Serves indices of a dataset in per-epoch shuffled order. A batch that
// crosses the end of an epoch continues with the next epoch's permutation.
// The position (State) can be saved and restored for an exact resume.
class EpochSampler {
 public:
  struct State {
    int64_t epoch = 0;
    int64_t cursor = 0;  // position in the epoch's permutation, [0, size)
  };

  // dataset_size > 0 (checked).
  EpochSampler(int64_t dataset_size, uint64_t seed);

  // Replaces *indices with the next batch_size (> 0, checked) indices.
  void NextBatch(int batch_size, std::vector<int64_t>* indices);

  State state() const { return state_; }
  // Fails (and changes nothing) unless epoch >= 0 and 0 <= cursor < size.
  absl::Status SetState(const State& state);

  int64_t dataset_size() const { return size_; }
  uint64_t seed() const { return seed_; }

 private:
  void EnsurePermutation();

  int64_t size_;
  uint64_t seed_;
  State state_;
  int64_t permutation_epoch_ = -1;
  std::vector<int64_t> permutation_;
};

// Fills images (indices.size() x C*H*W floats) and labels (indices.size()
// ints; may be null) from `dataset`, splitting the work over `num_threads`
// threads.
void LoadBatch(const Dataset& dataset, const std::vector<int64_t>& indices,
               float* images, int* labels, int num_threads = 2);

}  // namespace paragan

#endif  // PARAGAN_DATALOADER_DATASETS_SAMPLER_H_

#ifndef PARAGAN_WORKER_TRAIN_TRAINING_RUN_H_
#define PARAGAN_WORKER_TRAIN_TRAINING_RUN_H_

#include <atomic>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/tensor_io.h"
#include "dataloader/datasets/dataset.h"
#include "worker/train/gan_trainer.h"

namespace paragan {

// Watches a run's quality. RunTraining hands it the trainer's state
// (SaveState) every TrainingRunOptions::eval_every_s seconds and once at the
// end; an implementation scores it elsewhere (worker/eval's TrainerEvaluator:
// a thread of its own at low priority), so the loop never waits for a score.
class QualityObserver {
 public:
  virtual ~QualityObserver() = default;
  // False while the previous state is still being scored: the run then
  // takes no snapshot (a copy of every tensor) and asks again next step.
  virtual bool Ready() = 0;
  // The state after G step `step`, `wall_s` seconds into this run.
  virtual void Observe(std::vector<NamedArray> state, int64_t step,
                       double wall_s) = 0;
  // After training: waits for the round in flight, scores the final state
  // (at full speed: training is over) and returns how that went.
  virtual absl::Status Finish(std::vector<NamedArray> state, int64_t step,
                              double wall_s) = 0;
};

struct TrainingRunOptions {
  TrainerConfig trainer;
  DatasetSpec dataset;
  std::string device = "cpu";  // cpu | cuda
  CpuConvLayout cpu_layout = CpuConvLayout::kAuto;
  GpuConvLayout gpu_layout = GpuConvLayout::kAuto;
  GpuPrecision gpu_precision = GpuPrecision::kTf32;
  int threads = 2;
  int64_t steps = 5000;
  std::string out_dir = "runs/dcgan32";
  int64_t log_every = 50;
  int64_t sample_every = 500;  // grid PNG of the EMA generator
  int64_t checkpoint_every = 1000;
  int64_t num_samples = 1000;  // written as .npy at the end
  double max_seconds = 0;      // stop after this wall time (0: no limit)
  bool resume = true;          // continue from out_dir/checkpoint.pgt
  // Quality while training: `quality` (not owned; null: none) observes the
  // state every eval_every_s seconds and at the end.
  QualityObserver* quality = nullptr;
  double eval_every_s = 60;
};

// Trains in this process and writes out_dir/{checkpoint.pgt, grid_*.png,
// samples.npy, labels.npy (conditional models), summary.txt}. Returns early,
// with a final checkpoint, when *stop becomes true (signal handlers).
absl::Status RunTraining(const TrainingRunOptions& options,
                         const std::atomic<bool>* stop);

// A trainer restored from a checkpoint's arrays (ReadTensorFile): the model
// the checkpoint names with its default trainer settings, then every saved
// tensor, counter and RNG state. `backend` must outlive the trainer.
absl::StatusOr<std::unique_ptr<GanTrainer>> TrainerFromCheckpoint(
    const std::vector<NamedArray>& arrays, Backend* backend);

// Writes `n` EMA samples as <prefix>.npy (uint8, N x H x W for one channel,
// N x H x W x C otherwise), <prefix>_labels.npy for conditional models, and a
// grid PNG <prefix>.png (rows grouped by class when conditional).
absl::Status WriteSamples(GanTrainer* trainer, int64_t n, uint64_t seed,
                          const std::string& prefix);
// An 8-wide grid of the EMA generator on fixed z; conditional models get one
// row per class.
absl::Status WriteGrid(GanTrainer* trainer, const Tensor& z,
                       const std::string& path);
Tensor FixedGridZ(const GanTrainer& trainer);

}  // namespace paragan

#endif  // PARAGAN_WORKER_TRAIN_TRAINING_RUN_H_

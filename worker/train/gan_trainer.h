#ifndef PARAGAN_WORKER_TRAIN_GAN_TRAINER_H_
#define PARAGAN_WORKER_TRAIN_GAN_TRAINER_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/rng.h"
#include "common/tensor_io.h"
#include "worker/engine/losses.h"
#include "worker/engine/model.h"
#include "worker/engine/optimizer.h"

namespace paragan {

struct TrainerConfig {
  ModelConfig model;
  int batch_size = 64;
  AdamConfig g_adam;
  AdamConfig d_adam;
  int d_steps = 1;  // D updates per G update (the asymmetric policy)
  GanLoss loss = GanLoss::kHinge;
  float ema_decay = 0.999f;
  uint64_t seed = 0;
};

// Defaults of each model as its paper trains it: the registered model's
// ModelConfig and TrainerDefaults (worker/engine/model_registry.h). An unknown
// name keeps the generic defaults with that name, which GanTrainer::Create
// (MakeModel) refuses, listing the known models.
TrainerConfig DefaultTrainerConfig(const std::string& model_name);

struct StepStats {
  double d_loss = 0, g_loss = 0;
  double d_real = 0, d_fake = 0;  // mean logits in the last D step
};

// Fills one real batch: images [B, C, R, R] and labels (size B).
using BatchSource =
    std::function<void(Tensor* images, std::vector<int>* labels)>;

// The GAN update of one worker: D steps on real and fresh fake batches, then
// a G step through D, Adam on both, and an EMA of G. The inner loop that the
// distributed worker runs, here in one process.
class GanTrainer {
 public:
  static absl::StatusOr<std::unique_ptr<GanTrainer>> Create(
      const TrainerConfig& config, Backend* backend);

  // One G step: d_steps x (ComputeDGradients, ApplyDGradients), then
  // ComputeGGradients, ApplyGGradients, FinishStep.
  StepStats Step(const BatchSource& next_real);

  // The pieces of Step, for workers whose optimizer runs elsewhere (the
  // parameter servers). Step calls exactly these, in this order.
  //
  // One D gradient: draws z and fake labels, runs G on them in training mode
  // (BN batch statistics, G's running statistics move; no G gradients),
  // then D on real and fake together (one power iteration: D's
  // spectral-norm vectors move). Leaves D's gradients in its Params and sets
  // stats->d_loss, d_real and d_fake.
  void ComputeDGradients(const Tensor& real,
                         const std::vector<int>& real_labels, StepStats* stats);
  // The D gradient of ComputeDGradients on a given fake batch (D workers of
  // the decoupled schedule, whose fakes come from G workers).
  void ComputeDGradientsOn(const Tensor& real,
                           const std::vector<int>& real_labels,
                           const Tensor& fake,
                           const std::vector<int>& fake_labels,
                           StepStats* stats);
  // Adam on D with the gradients left by ComputeDGradients.
  void ApplyDGradients();
  // One G gradient through the current D: fresh z and labels, G in training
  // mode, D without parameter gradients or power iteration. Leaves G's
  // gradients in its Params and sets stats->g_loss. When set, *fake_out
  // receives that very batch (host) and *labels_out its labels: the G worker
  // of the decoupled schedule publishes them for D workers.
  void ComputeGGradients(StepStats* stats, Tensor* fake_out = nullptr,
                         std::vector<int>* labels_out = nullptr);
  // A further fake batch (host) as ComputeDGradients draws one (G in
  // training mode, no gradients) and its labels.
  Tensor GenerateFakes(std::vector<int>* labels);
  // Adam on G with the gradients left by ComputeGGradients.
  void ApplyGGradients();
  // EMA of G and the step counter.
  void FinishStep();

  // Images from the EMA generator in eval mode. labels may be empty for
  // unconditional models.
  Tensor SampleEma(const Tensor& z, const std::vector<int>& labels);
  Tensor RandomZ(int n, Rng* rng) const;

  // Replaces the N(0, 1) draws of z (tests feed fixed inputs).
  void SetNoiseSourceForTesting(std::function<Tensor(int n)> source) {
    noise_source_ = std::move(source);
  }

  int64_t step() const { return step_; }
  const TrainerConfig& config() const { return config_; }
  GanModel& model() { return *model_; }
  const GanModel& model() const { return *model_; }
  GanModel& ema_model() { return *ema_; }

  // Everything needed to resume bit-identically: weights, buffers, Adam
  // moments and counts, EMA, step, RNG state, and the model definition.
  absl::StatusOr<std::vector<NamedArray>> SaveState();
  absl::Status RestoreState(const std::vector<NamedArray>& arrays);

 private:
  GanTrainer(const TrainerConfig& config, Backend* backend,
             std::unique_ptr<GanModel> model, std::unique_ptr<GanModel> ema);
  std::vector<int> RandomLabels(int n);
  void UpdateEma();
  // name -> tensor for every tensor in the checkpoint.
  std::vector<std::pair<std::string, Tensor*>> StateTensors();

  TrainerConfig config_;
  Backend* backend_;
  std::unique_ptr<GanModel> model_, ema_;
  Adam g_adam_, d_adam_;
  Rng rng_;
  int64_t step_ = 0;
  std::function<Tensor(int n)> noise_source_;
};

// Checkpoint = SaveState plus caller extras, written atomically.
absl::Status WriteCheckpoint(const std::string& path,
                             std::vector<NamedArray> arrays);
// Reads the model definition stored in a checkpoint.
absl::StatusOr<ModelConfig> ModelConfigFromState(
    const std::vector<NamedArray>& arrays);

}  // namespace paragan

#endif  // PARAGAN_WORKER_TRAIN_GAN_TRAINER_H_

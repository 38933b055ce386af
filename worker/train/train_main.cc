// paragan_train: single-process GAN training (the worker's inner loop).

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <system_error>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "common/flags_usage.h"
#include "common/malloc_tuning.h"
#include "worker/engine/model_registry.h"
#include "worker/eval/evaluate.h"
#include "worker/eval/trainer_eval.h"
#include "worker/train/training_run.h"

// Help texts list the registered models (worker/engine/model_registry.h).
ABSL_FLAG(std::string, model, "dcgan32", paragan::ModelFlagHelp());
ABSL_FLAG(std::string, dataset, "fashion_mnist",
          "fashion_mnist | folder | synthetic");
ABSL_FLAG(
    std::string, data_dir, "/usr/share/datasets/fashion-mnist",
    "dataset directory (fashion_mnist idx .gz files, or class sub-folders)");
ABSL_FLAG(int, batch_size, 64, "images per D and G step");
ABSL_FLAG(int64_t, steps, 5000, "G steps to train (total, across resumes)");
ABSL_FLAG(double, max_seconds, 0,
          "stop after this wall time in seconds (0: none)");
ABSL_FLAG(uint64_t, seed, 0, "seed for weights, z and data order");
ABSL_FLAG(std::string, out_dir, "runs/dcgan32", "output directory");
ABSL_FLAG(int, threads, 2, "CPU threads");
ABSL_FLAG(std::string, device, "cpu",
          "cpu | cuda (cuda needs a --config=cuda build and a GPU)");
ABSL_FLAG(std::string, gpu_layout, "auto",
          "GPU convolution layout: nchw | nhwc (channels padded to 8) | auto "
          "(per shape, measured at start)");
ABSL_FLAG(std::string, gpu_precision, "tf32",
          "GPU convolution and matmul arithmetic: fp32 | tf32 | bf16 | auto "
          "(fastest per shape); weights and gradients stay float32");
ABSL_FLAG(std::string, cpu_layout, "auto",
          "CPU convolution layouts: auto (measured per shape at start-up), "
          "blocked (oneDNN's) or canonical (NCHW)");
ABSL_FLAG(int64_t, log_every, 50, "progress line every N steps");
ABSL_FLAG(int64_t, sample_every, 500,
          "EMA sample grid PNG every N steps (0: off)");
ABSL_FLAG(int64_t, checkpoint_every, 1000,
          "checkpoint every N steps (0: only at the end)");
ABSL_FLAG(int64_t, num_samples, 1000,
          "samples written to samples.npy at the end");
ABSL_FLAG(bool, resume, true,
          "resume from out_dir/checkpoint.pgt when present");
ABSL_FLAG(double, lr_g, -1, "G learning rate (default: the model's)");
ABSL_FLAG(double, lr_d, -1, "D learning rate (default: the model's)");
ABSL_FLAG(double, beta1, -1, "Adam beta1 for G and D (default: the model's)");
ABSL_FLAG(double, beta2, -1, "Adam beta2 for G and D (default: the model's)");
ABSL_FLAG(int, d_steps, 0, "D steps per G step (default: the model's)");
ABSL_FLAG(std::string, loss, "hinge", "hinge | ns");
ABSL_FLAG(double, ema_decay, 0.999, "EMA decay of G's weights");
ABSL_FLAG(int, width, 64, "BigGAN channel multiplier");
ABSL_FLAG(bool, attention, true, "BigGAN self-attention at 16x16");
ABSL_FLAG(int64_t, synthetic_size, 4096, "images in the synthetic dataset");
ABSL_FLAG(int, channels, 1,
          "image channels for folder and synthetic datasets (1 or 3); "
          "Fashion-MNIST is 1");

ABSL_FLAG(double, eval_every_s, -1,
          "score the EMA generator every this many seconds (FID, KID, IS "
          "into <out_dir>/fid.csv and fid.png; a thread of its own at low "
          "CPU priority) and once more after training; 0: never; -1: 60 "
          "for 32x32 Fashion-MNIST, else 0");
ABSL_FLAG(int64_t, eval_samples, 2000, "samples per evaluation while training");
ABSL_FLAG(int64_t, eval_final_samples, 10000,
          "samples of the evaluation after training (0: none)");
ABSL_FLAG(std::string, eval_network, "fmnist-cnn",
          "feature network of the evaluations (paragan_eval --network)");
ABSL_FLAG(std::string, eval_weights, "",
          "the feature network's weights (default: its own)");
ABSL_FLAG(std::string, eval_reference, "",
          "reference statistics (default: paragan_eval's per-user cache, "
          "computed before training when missing)");

namespace {
std::atomic<bool> g_stop{false};
void HandleSignal(int) { g_stop.store(true); }
}  // namespace

int main(int argc, char** argv) {
  paragan::KeepLargeAllocationsInHeap();
  paragan::SetUsage(
      absl::StrCat("Trains a GAN in one process. Example:\n  paragan_train "
                   "--model=dcgan32 "
                   "--steps=5000 --out_dir=runs/dcgan32\nModels:\n",
                   paragan::ModelDescriptions()),
      "worker/train/train_main.cc");
  absl::ParseCommandLine(argc, argv);
  using paragan::TrainingRunOptions;
  TrainingRunOptions o;
  const std::string model = absl::GetFlag(FLAGS_model);
  if (absl::Status st = paragan::GetModelSpec(model).status(); !st.ok()) {
    std::fprintf(stderr, "error: --model: %s\n",
                 std::string(st.message()).c_str());
    return 2;
  }
  o.trainer = paragan::DefaultTrainerConfig(model);
  o.trainer.model.width = absl::GetFlag(FLAGS_width);
  o.trainer.model.attention = absl::GetFlag(FLAGS_attention);
  o.trainer.batch_size = absl::GetFlag(FLAGS_batch_size);
  o.trainer.seed = absl::GetFlag(FLAGS_seed);
  o.trainer.ema_decay = static_cast<float>(absl::GetFlag(FLAGS_ema_decay));
  if (absl::GetFlag(FLAGS_lr_g) > 0)
    o.trainer.g_adam.lr = absl::GetFlag(FLAGS_lr_g);
  if (absl::GetFlag(FLAGS_lr_d) > 0)
    o.trainer.d_adam.lr = absl::GetFlag(FLAGS_lr_d);
  if (absl::GetFlag(FLAGS_beta1) >= 0)
    o.trainer.g_adam.beta1 = o.trainer.d_adam.beta1 =
        absl::GetFlag(FLAGS_beta1);
  if (absl::GetFlag(FLAGS_beta2) >= 0)
    o.trainer.g_adam.beta2 = o.trainer.d_adam.beta2 =
        absl::GetFlag(FLAGS_beta2);
  if (absl::GetFlag(FLAGS_d_steps) > 0)
    o.trainer.d_steps = absl::GetFlag(FLAGS_d_steps);
  auto loss = paragan::ParseGanLoss(absl::GetFlag(FLAGS_loss));
  if (!loss.ok()) {
    std::fprintf(stderr, "error: --loss: %s\n", loss.status().message().data());
    return 2;
  }
  o.trainer.loss = *loss;
  o.dataset.name = absl::GetFlag(FLAGS_dataset);
  o.dataset.path = absl::GetFlag(FLAGS_data_dir);
  o.dataset.synthetic_size = absl::GetFlag(FLAGS_synthetic_size);
  o.dataset.seed = o.trainer.seed;
  o.dataset.channels = absl::GetFlag(FLAGS_channels);
  o.dataset.resolution = o.trainer.model.resolution;
  o.device = absl::GetFlag(FLAGS_device);
  auto layout = paragan::ParseCpuConvLayout(absl::GetFlag(FLAGS_cpu_layout));
  if (!layout.ok()) {
    std::fprintf(stderr, "error: --cpu_layout: %s\n",
                 std::string(layout.status().message()).c_str());
    return 2;
  }
  o.cpu_layout = *layout;
  auto gpu_layout =
      paragan::ParseGpuConvLayout(absl::GetFlag(FLAGS_gpu_layout));
  if (!gpu_layout.ok()) {
    std::fprintf(stderr, "error: --gpu_layout: %s\n",
                 std::string(gpu_layout.status().message()).c_str());
    return 2;
  }
  o.gpu_layout = *gpu_layout;
  auto precision =
      paragan::ParseGpuPrecision(absl::GetFlag(FLAGS_gpu_precision));
  if (!precision.ok()) {
    std::fprintf(stderr, "error: --gpu_precision: %s\n",
                 std::string(precision.status().message()).c_str());
    return 2;
  }
  o.gpu_precision = *precision;
  o.threads = absl::GetFlag(FLAGS_threads);
  o.steps = absl::GetFlag(FLAGS_steps);
  o.max_seconds = absl::GetFlag(FLAGS_max_seconds);
  o.out_dir = absl::GetFlag(FLAGS_out_dir);
  o.log_every = std::max<int64_t>(1, absl::GetFlag(FLAGS_log_every));
  o.sample_every = absl::GetFlag(FLAGS_sample_every);
  o.checkpoint_every = absl::GetFlag(FLAGS_checkpoint_every);
  o.num_samples = absl::GetFlag(FLAGS_num_samples);
  o.resume = absl::GetFlag(FLAGS_resume);
  double eval_every_s = absl::GetFlag(FLAGS_eval_every_s);
  if (eval_every_s < 0)
    eval_every_s = o.dataset.name == "fashion_mnist" &&
                           o.trainer.model.resolution == 32
                       ? 60
                       : 0;
  std::unique_ptr<paragan::eval::TrainerEvaluator> evaluator;
  if (eval_every_s > 0) {
    paragan::eval::TrainerEvalOptions eo;
    eo.network = absl::GetFlag(FLAGS_eval_network);
    eo.weights = absl::GetFlag(FLAGS_eval_weights);
    eo.reference = absl::GetFlag(FLAGS_eval_reference);
    if (eo.reference.empty())
      eo.reference = paragan::eval::DefaultReferencePath(eo.network);
    eo.data_dir = o.dataset.path;
    eo.num_samples = absl::GetFlag(FLAGS_eval_samples);
    eo.final_samples = absl::GetFlag(FLAGS_eval_final_samples);
    eo.seed = o.trainer.seed + 1;
    eo.escalate_after_s = 2 * eval_every_s;
    eo.csv = o.out_dir + "/fid.csv";
    eo.png = o.out_dir + "/fid.png";
    std::error_code ec;
    std::filesystem::create_directories(o.out_dir, ec);
    auto started = paragan::eval::TrainerEvaluator::Start(eo);
    if (!started.ok()) {
      std::fprintf(stderr, "error: the evaluator: %s (--eval_every_s=0 trains "
                   "without one)\n",
                   std::string(started.status().message()).c_str());
      return 1;
    }
    evaluator = std::move(*started);
    o.quality = evaluator.get();
    o.eval_every_s = eval_every_s;
  }
  std::signal(SIGINT, HandleSignal);
  std::signal(SIGTERM, HandleSignal);
  const absl::Status st = paragan::RunTraining(o, &g_stop);
  if (!st.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(st.message()).c_str());
    return 1;
  }
  return 0;
}

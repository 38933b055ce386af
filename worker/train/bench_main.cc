// paragan_bench: times full training steps (D step(s) + G step) of a model on
// random data, the counterpart of tests/pytorch/bench_reference.py.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "common/flags_usage.h"
#include "common/malloc_tuning.h"
#include "common/rng.h"
#include "worker/engine/model_registry.h"
#include "worker/train/gan_trainer.h"

// Help texts list the registered models (worker/engine/model_registry.h).
ABSL_FLAG(std::string, model, "dcgan32", paragan::ModelFlagHelp());
ABSL_FLAG(int, threads, 2, "CPU threads");
ABSL_FLAG(int, batch, 64, "batch size");
ABSL_FLAG(int, warmup, 3, "untimed steps");
ABSL_FLAG(int, iters, 20, "timed steps");
ABSL_FLAG(int, d_steps, 1, "D steps per G step in the timed step");
ABSL_FLAG(int, channels, 1, "image channels");
ABSL_FLAG(int, width, 64, "BigGAN channel multiplier");
ABSL_FLAG(bool, attention, true, "BigGAN self-attention");
ABSL_FLAG(std::string, layout, "blocked",
          "CPU conv layout: auto | blocked | canonical");
ABSL_FLAG(std::string, device, "cpu", "cpu | cuda");
ABSL_FLAG(std::string, gpu_layout, "auto",
          "GPU conv layout: nchw | nhwc | auto (per shape, measured)");
ABSL_FLAG(std::string, gpu_precision, "tf32",
          "GPU conv/matmul precision: fp32 | tf32 | bf16 | auto (per shape)");
ABSL_FLAG(bool, log_autotune, false, "print each autotune decision");

int main(int argc, char** argv) {
  paragan::KeepLargeAllocationsInHeap();
  paragan::SetUsage(
      absl::StrCat(
          "Times training steps of a model on random data. Example:\n  "
          "paragan_bench --model=dcgan32 --threads=2 --layout=auto\nModels:\n",
          paragan::ModelDescriptions()),
      "worker/train/bench_main.cc");
  absl::ParseCommandLine(argc, argv);
  if (absl::Status st =
          paragan::GetModelSpec(absl::GetFlag(FLAGS_model)).status();
      !st.ok()) {
    std::fprintf(stderr, "error: --model: %s\n",
                 std::string(st.message()).c_str());
    return 2;
  }
  const std::string device = absl::GetFlag(FLAGS_device);
  paragan::BackendOptions options;
  options.threads = absl::GetFlag(FLAGS_threads);
  options.log_autotune = absl::GetFlag(FLAGS_log_autotune);
  auto cpu_layout = paragan::ParseCpuConvLayout(absl::GetFlag(FLAGS_layout));
  auto gpu_layout =
      paragan::ParseGpuConvLayout(absl::GetFlag(FLAGS_gpu_layout));
  auto precision =
      paragan::ParseGpuPrecision(absl::GetFlag(FLAGS_gpu_precision));
  for (const absl::Status& s :
       {cpu_layout.status(), gpu_layout.status(), precision.status()}) {
    if (!s.ok()) {
      std::fprintf(stderr, "error: %s\n", std::string(s.message()).c_str());
      return 2;
    }
  }
  options.cpu_layout = *cpu_layout;
  options.gpu_layout = *gpu_layout;
  options.gpu_precision = *precision;
  // Autotuning happens on the first (warm-up) step, outside the timing.
  auto backend_or = paragan::MakeBackend(device, options);
  if (!backend_or.ok()) {
    std::fprintf(stderr, "error: %s\n",
                 std::string(backend_or.status().message()).c_str());
    return 1;
  }
  std::unique_ptr<paragan::Backend> backend = std::move(*backend_or);
  const std::string model = absl::GetFlag(FLAGS_model);
  paragan::TrainerConfig tc = paragan::DefaultTrainerConfig(model);
  tc.model.image_channels = absl::GetFlag(FLAGS_channels);
  tc.model.width = absl::GetFlag(FLAGS_width);
  tc.model.attention = absl::GetFlag(FLAGS_attention);
  tc.batch_size = absl::GetFlag(FLAGS_batch);
  tc.d_steps = absl::GetFlag(FLAGS_d_steps);
  auto trainer = paragan::GanTrainer::Create(tc, backend.get());
  if (!trainer.ok()) {
    std::fprintf(stderr, "error: %s\n",
                 std::string(trainer.status().message()).c_str());
    return 1;
  }
  const int b = tc.batch_size, c = tc.model.image_channels;
  paragan::Rng rng(1);
  const int r = tc.model.resolution;
  paragan::Tensor real = paragan::Tensor::Host({b, c, r, r});
  for (int64_t i = 0; i < real.numel(); ++i)
    real.data()[i] = 2 * rng.Uniform() - 1;
  paragan::Tensor dev = backend->FromHost(real);
  std::vector<int> labels(b);
  for (int i = 0; i < b; ++i) labels[i] = i % 10;
  auto source = [&](paragan::Tensor* images, std::vector<int>* l) {
    *images = dev;
    *l = labels;
  };
  for (int i = 0; i < absl::GetFlag(FLAGS_warmup); ++i)
    (*trainer)->Step(source);
  backend->Synchronize();
  const int iters = absl::GetFlag(FLAGS_iters);
  std::vector<double> times;
  for (int i = 0; i < iters; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    (*trainer)->Step(source);
    backend->Synchronize();
    times.push_back(std::chrono::duration<double, std::milli>(
                        std::chrono::steady_clock::now() - t0)
                        .count());
  }
  std::sort(times.begin(), times.end());
  double mean = 0;
  for (double t : times) mean += t / iters;
  const double median = times[iters / 2];
  const std::string config =
      device == "cpu" ? absl::GetFlag(FLAGS_layout)
                      : absl::StrCat(absl::GetFlag(FLAGS_gpu_layout), "/",
                                     absl::GetFlag(FLAGS_gpu_precision));
  std::printf(
      "%s on %s: batch %d, %s: mean %.2f ms/step, median %.2f ms, "
      "%.1f img/s\n",
      tc.model.name.c_str(), backend->name().c_str(), b, config.c_str(), mean,
      median, b / (mean / 1000.0));
  std::printf(
      "RESULT model=%s framework=paragan device=%s threads=%d batch=%d "
      "layout=%s ms_per_step=%.2f imgs_per_s=%.1f\n",
      tc.model.name.c_str(), device.c_str(), absl::GetFlag(FLAGS_threads), b,
      config.c_str(), mean, b / (mean / 1000.0));
  return 0;
}

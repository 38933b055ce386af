// paragan_bench: times full training steps (D step(s) + G step) of a model on
// random data, the counterpart of tests/pytorch/bench_reference.py.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "common/rng.h"
#include "worker/train/gan_trainer.h"

ABSL_FLAG(std::string, model, "dcgan32", "dcgan32 | biggan32");
ABSL_FLAG(int, threads, 2, "CPU threads");
ABSL_FLAG(int, batch, 64, "batch size");
ABSL_FLAG(int, warmup, 3, "untimed steps");
ABSL_FLAG(int, iters, 20, "timed steps");
ABSL_FLAG(int, d_steps, 1, "D steps per G step in the timed step");
ABSL_FLAG(int, channels, 1, "image channels");
ABSL_FLAG(int, width, 64, "BigGAN channel multiplier");
ABSL_FLAG(bool, attention, true, "BigGAN self-attention");
ABSL_FLAG(std::string, layout, "blocked",
          "CPU conv layout: blocked | canonical");

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string layout = absl::GetFlag(FLAGS_layout);
  auto parsed = paragan::ParseCpuConvLayout(layout);
  if (!parsed.ok()) {
    std::fprintf(stderr, "error: --layout: %s\n",
                 std::string(parsed.status().message()).c_str());
    return 2;
  }
  // Autotuning happens on the first (warm-up) step, outside the timing.
  auto backend = paragan::MakeCpuBackend(absl::GetFlag(FLAGS_threads), *parsed,
                                         /*log_autotune=*/false);
  paragan::TrainerConfig tc =
      paragan::DefaultTrainerConfig(absl::GetFlag(FLAGS_model));
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
  paragan::Tensor real = paragan::Tensor::Host({b, c, 32, 32});
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
  std::printf(
      "%s: %d threads, batch %d, layout %s: mean %.2f ms/step, median %.2f ms, "
      "%.1f img/s\n",
      tc.model.name.c_str(), absl::GetFlag(FLAGS_threads), b, layout.c_str(),
      mean, median, b / (mean / 1000.0));
  std::printf(
      "RESULT model=%s framework=paragan threads=%d batch=%d layout=%s "
      "ms_per_step=%.2f imgs_per_s=%.1f\n",
      tc.model.name.c_str(), absl::GetFlag(FLAGS_threads), b, layout.c_str(),
      mean, b / (mean / 1000.0));
  return 0;
}

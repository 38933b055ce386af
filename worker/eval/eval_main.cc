// paragan_eval: scores generated samples with fmnist-cnn (FID, KID, IS)
// against Fashion-MNIST train reference statistics (evaluate.h).
//   paragan_eval --samples=runs/x/samples.npy --reference=/tmp/fmnist_train.pgt
//   paragan_eval --checkpoint=runs/x/checkpoint.pgt --num_samples=10000 ...
// Exit status: 0 ok, 1 bad input / failure, 2 bad flags.

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "common/flags_usage.h"
#include "common/optim_kernels.h"
#include "common/tensor_io.h"
#include "worker/engine/backend.h"
#include "worker/eval/evaluate.h"
#include "worker/eval/fmnist_cnn.h"

ABSL_FLAG(std::string, samples, "",
          ".npy of samples: uint8 [N,32,32] / [N,1,32,32] (as paragan_sample "
          "and paragan_train write) or float32 in [-1, 1]");
ABSL_FLAG(std::string, checkpoint, "",
          "paragan_train checkpoint.pgt: generate --num_samples with the EMA "
          "generator as paragan_sample does (instead of --samples)");
ABSL_FLAG(int64_t, num_samples, 10000, "--checkpoint: samples to generate");
ABSL_FLAG(uint64_t, seed, 1, "--checkpoint: the samples' z seed; KID subsets");
ABSL_FLAG(std::string, reference, "",
          "reference FeatureStats .pgt (fmnist-cnn); computed from the 60k "
          "Fashion-MNIST train images and saved there when missing (with "
          "<reference>.features.pgt, which KID needs)");
ABSL_FLAG(std::string, weights, "worker/eval/fmnist_cnn.pgt",
          "fmnist-cnn weights");
ABSL_FLAG(std::string, data_dir, "",
          "Fashion-MNIST directory (default: $PARAGAN_FASHION_MNIST_DIR or "
          "/usr/share/datasets/fashion-mnist)");
ABSL_FLAG(std::string, json, "", "also write the metrics as JSON here");
ABSL_FLAG(int, kid_subsets, 100, "KID subsets");
ABSL_FLAG(int64_t, kid_subset_size, 1000, "KID subset size (capped at N)");
ABSL_FLAG(int, is_splits, 10, "IS splits");
ABSL_FLAG(std::string, device, "cpu", "--checkpoint: generator backend");
ABSL_FLAG(int, threads, 2, "CPU threads");

namespace {
using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}
int Fail(const absl::Status& st) {
  std::fprintf(stderr, "error: %s\n", std::string(st.message()).c_str());
  return 1;
}
int Usage(const char* msg) {
  std::fprintf(stderr, "error: %s\n", msg);
  return 2;
}
}  // namespace

int main(int argc, char** argv) {
  paragan::SetUsage(
      "Scores samples with fmnist-cnn: FID, KID, IS. Example:\n  paragan_eval "
      "--samples=runs/dcgan32/samples.npy --reference=/tmp/fmnist_train.pgt",
      "worker/eval/eval_main.cc");
  absl::ParseCommandLine(argc, argv);
  namespace ev = paragan::eval;
  const std::string samples = absl::GetFlag(FLAGS_samples);
  const std::string checkpoint = absl::GetFlag(FLAGS_checkpoint);
  const std::string reference = absl::GetFlag(FLAGS_reference);
  if (samples.empty() == checkpoint.empty())
    return Usage("give exactly one of --samples=<file.npy> or --checkpoint");
  if (reference.empty()) return Usage("--reference=<stats.pgt> is required");
  std::string dir = absl::GetFlag(FLAGS_data_dir);
  if (dir.empty()) {
    const char* env = std::getenv("PARAGAN_FASHION_MNIST_DIR");
    dir = env && *env ? env : "/usr/share/datasets/fashion-mnist";
  }
  const int threads = absl::GetFlag(FLAGS_threads);
  paragan::SetKernelThreads(threads);
  std::unique_ptr<paragan::Backend> backend =
      paragan::MakeCpuBackend(threads, paragan::CpuConvLayout::kAuto);
  ev::FmnistCnn net(backend.get());
  if (auto st = net.Load(absl::GetFlag(FLAGS_weights)); !st.ok())
    return Fail(st.status());

  auto t0 = Clock::now();
  absl::StatusOr<paragan::Tensor> images =
      samples.empty()
          ? ev::SamplesFromCheckpoint(
                checkpoint, absl::GetFlag(FLAGS_num_samples),
                absl::GetFlag(FLAGS_seed), absl::GetFlag(FLAGS_device), threads)
          : ev::LoadSamplesNpy(samples);
  if (!images.ok()) return Fail(images.status());
  std::printf("%s %lld samples from %s in %.2f s\n",
              samples.empty() ? "generated" : "loaded",
              static_cast<long long>(images->dim(0)),
              samples.empty() ? checkpoint.c_str() : samples.c_str(),
              Since(t0));

  auto ref = ev::LoadOrComputeReference(reference, dir, &net);
  if (!ref.ok()) return Fail(ref.status());
  if (ref->computed)
    std::printf(
        "reference %s did not exist: computed from %lld Fashion-MNIST train "
        "images (%s) in %.2f s and saved it (+ %s)\n",
        reference.c_str(), static_cast<long long>(ref->stats.count),
        dir.c_str(), ref->seconds,
        ev::ReferenceFeaturesPath(reference).c_str());
  else
    std::printf("reference %s: %lld images of %s%s\n", reference.c_str(),
                static_cast<long long>(ref->stats.count),
                ref->stats.dataset.c_str(),
                ref->features.numel() ? "" : " (no features file: no KID)");

  ev::EvalOptions o;
  o.kid_subsets = absl::GetFlag(FLAGS_kid_subsets);
  o.kid_subset_size = absl::GetFlag(FLAGS_kid_subset_size);
  o.is_splits = absl::GetFlag(FLAGS_is_splits);
  o.seed = absl::GetFlag(FLAGS_seed);
  o.dataset = samples.empty() ? checkpoint : samples;
  auto r = ev::EvaluateSamples(&net, *images, *ref, o);
  if (!r.ok()) return Fail(r.status());
  std::printf("%s", ev::FormatResult(*r).c_str());
  std::printf("time: features %.2f s, metrics %.2f s\n", r->features_seconds,
              r->metrics_seconds);
  const std::string json = absl::GetFlag(FLAGS_json);
  if (!json.empty()) {
    if (auto st = paragan::WriteFileAtomically(json, ev::ResultJson(*r));
        !st.ok())
      return Fail(st);
    std::printf("wrote %s\n", json.c_str());
  }
  return 0;
}

// paragan_sample: loads a training checkpoint and writes EMA-generator
// samples; or, with --ps, writes a distributed run's outputs from its
// parameter-server shards (the local launcher runs it so at the end).

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/flags_usage.h"
#include "common/tensor_io.h"
#include "worker/engine/model_registry.h"
#include "worker/train/server_export.h"
#include "worker/train/training_run.h"

ABSL_FLAG(std::string, checkpoint, "",
          "checkpoint.pgt written by paragan_train");
ABSL_FLAG(int64_t, num_samples, 1000, "number of samples");
ABSL_FLAG(std::string, out, "samples",
          "output prefix: <out>.npy, <out>.png (+ <out>_labels.npy)");
ABSL_FLAG(uint64_t, seed, 1,
          "seed for the samples' z; with --ps, the trainer whose RNG state "
          "checkpoint.pgt records gets seed - 1 (runs sample with their "
          "seed + 1, so --seed=<the run's seed + 1> rebuilds its files)");
ABSL_FLAG(std::string, device, "cpu", "cpu | cuda (--ps: cpu only)");
ABSL_FLAG(int, threads, 2, "CPU threads");
ABSL_FLAG(std::string, ps, "",
          "host:port,host:port: every parameter-server shard of a run; "
          "writes grid_<G step>.png, samples.npy/.png (+ samples_labels.npy) "
          "and checkpoint.pgt into --out_dir from the shards' G, D and G_ema "
          "(G when they keep no EMA) instead of reading --checkpoint");
// Help texts list the registered models (worker/engine/model_registry.h).
ABSL_FLAG(std::string, model, "dcgan32",
          absl::StrCat("--ps: the model the shards hold, ",
                       paragan::ModelFlagHelp()));
ABSL_FLAG(std::string, out_dir, "", "--ps: output directory");
ABSL_FLAG(int, batch_size, 64, "--ps: the run's batch size");

namespace {

int Fail(const absl::Status& st) {
  std::fprintf(stderr, "error: %s\n", std::string(st.message()).c_str());
  return 1;
}

// --ps mode: one "wrote <path>" line per file (the launcher lists them).
int ExportFromShards() {
  if (!absl::GetFlag(FLAGS_checkpoint).empty()) {
    return Fail(absl::InvalidArgumentError(
        "--ps and --checkpoint exclude each other: sample from the shards "
        "(--ps) or from a checkpoint file (--checkpoint)"));
  }
  if (absl::GetFlag(FLAGS_device) != "cpu") {
    return Fail(
        absl::InvalidArgumentError("--ps runs on the CPU only (--device=cpu)"));
  }
  paragan::ServerExportOptions o;
  o.ps = absl::StrSplit(absl::GetFlag(FLAGS_ps), ',', absl::SkipWhitespace());
  o.model = absl::GetFlag(FLAGS_model);
  if (absl::Status st = paragan::GetModelSpec(o.model).status(); !st.ok()) {
    return Fail(
        absl::InvalidArgumentError(absl::StrCat("--model: ", st.message())));
  }
  o.out_dir = absl::GetFlag(FLAGS_out_dir);
  o.num_samples = absl::GetFlag(FLAGS_num_samples);
  o.samples_seed = absl::GetFlag(FLAGS_seed);
  // See --seed: the trainer's seed is the run's, samples use it + 1.
  o.trainer_seed = o.samples_seed - 1;
  o.batch_size = absl::GetFlag(FLAGS_batch_size);
  o.threads = absl::GetFlag(FLAGS_threads);
  if (o.out_dir.empty()) {
    return Fail(absl::InvalidArgumentError("--ps needs --out_dir"));
  }
  std::error_code ec;
  std::filesystem::create_directories(o.out_dir, ec);
  if (ec) {
    return Fail(absl::InternalError("cannot create " + o.out_dir + ": " +
                                    ec.message()));
  }
  auto written = paragan::ExportFromServers(o);
  if (!written.ok()) return Fail(written.status());
  for (const std::string& path : *written) {
    std::printf("wrote %s\n", path.c_str());
  }
  std::fflush(stdout);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  paragan::SetUsage(
      absl::StrCat(
          "Writes samples from a checkpoint, or a run's outputs from its "
          "parameter servers (--ps). Example:\n  paragan_sample "
          "--checkpoint=runs/dcgan32/checkpoint.pgt --num_samples=1000 "
          "--out=/tmp/samples\nor, from a run's parameter servers:\n  "
          "paragan_sample --ps=localhost:5000,localhost:5001 --model=dcgan32 "
          "--out_dir=/tmp/run\nModels:\n",
          paragan::ModelDescriptions()),
      "worker/train/sample_main.cc");
  absl::ParseCommandLine(argc, argv);
  if (!absl::GetFlag(FLAGS_ps).empty()) return ExportFromShards();
  const std::string path = absl::GetFlag(FLAGS_checkpoint);
  if (path.empty())
    return Fail(
        absl::InvalidArgumentError("--checkpoint (or --ps) is required"));
  auto arrays = paragan::ReadTensorFile(path);
  if (!arrays.ok()) return Fail(arrays.status());
  auto backend = paragan::MakeBackend(absl::GetFlag(FLAGS_device),
                                      absl::GetFlag(FLAGS_threads));
  if (!backend.ok()) return Fail(backend.status());
  auto trainer = paragan::TrainerFromCheckpoint(*arrays, backend->get());
  if (!trainer.ok()) return Fail(trainer.status());
  const std::string out = absl::GetFlag(FLAGS_out);
  if (auto st = paragan::WriteSamples(trainer->get(),
                                      absl::GetFlag(FLAGS_num_samples),
                                      absl::GetFlag(FLAGS_seed), out);
      !st.ok())
    return Fail(st);
  std::printf("wrote %s.npy and %s.png (%lld samples of %s at step %lld)\n",
              out.c_str(), out.c_str(),
              static_cast<long long>(absl::GetFlag(FLAGS_num_samples)),
              (*trainer)->config().model.name.c_str(),
              static_cast<long long>((*trainer)->step()));
  return 0;
}

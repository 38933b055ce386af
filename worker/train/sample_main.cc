// paragan_sample: loads a training checkpoint and writes EMA-generator samples.

#include <cstdio>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "common/tensor_io.h"
#include "worker/train/training_run.h"

ABSL_FLAG(std::string, checkpoint, "",
          "checkpoint.pgt written by paragan_train");
ABSL_FLAG(int64_t, num_samples, 1000, "number of samples");
ABSL_FLAG(std::string, out, "samples",
          "output prefix: <out>.npy, <out>.png (+ <out>_labels.npy)");
ABSL_FLAG(uint64_t, seed, 1, "seed for z");
ABSL_FLAG(std::string, device, "cpu", "cpu | cuda");
ABSL_FLAG(int, threads, 2, "CPU threads");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Writes samples from a checkpoint. Example:\n  paragan_sample "
      "--checkpoint=runs/dcgan32/checkpoint.pgt --num_samples=1000 "
      "--out=/tmp/samples");
  absl::ParseCommandLine(argc, argv);
  auto fail = [](const absl::Status& st) {
    std::fprintf(stderr, "error: %s\n", std::string(st.message()).c_str());
    return 1;
  };
  const std::string path = absl::GetFlag(FLAGS_checkpoint);
  if (path.empty())
    return fail(absl::InvalidArgumentError("--checkpoint is required"));
  auto arrays = paragan::ReadTensorFile(path);
  if (!arrays.ok()) return fail(arrays.status());
  auto model = paragan::ModelConfigFromState(*arrays);
  if (!model.ok()) return fail(model.status());
  auto backend = paragan::MakeBackend(absl::GetFlag(FLAGS_device),
                                      absl::GetFlag(FLAGS_threads));
  if (!backend.ok()) return fail(backend.status());
  paragan::TrainerConfig tc = paragan::DefaultTrainerConfig(model->name);
  tc.model = *model;
  auto trainer = paragan::GanTrainer::Create(tc, backend->get());
  if (!trainer.ok()) return fail(trainer.status());
  if (auto st = (*trainer)->RestoreState(*arrays); !st.ok()) return fail(st);
  const std::string out = absl::GetFlag(FLAGS_out);
  if (auto st = paragan::WriteSamples(trainer->get(),
                                      absl::GetFlag(FLAGS_num_samples),
                                      absl::GetFlag(FLAGS_seed), out);
      !st.ok())
    return fail(st);
  std::printf("wrote %s.npy and %s.png (%lld samples of %s at step %lld)\n",
              out.c_str(), out.c_str(),
              static_cast<long long>(absl::GetFlag(FLAGS_num_samples)),
              model->name.c_str(), static_cast<long long>((*trainer)->step()));
  return 0;
}

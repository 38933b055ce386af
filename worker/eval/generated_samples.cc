#include "worker/eval/generated_samples.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "common/tensor_io.h"
#include "worker/engine/backend.h"
#include "worker/eval/evaluate.h"
#include "worker/train/gan_trainer.h"
#include "worker/train/server_export.h"
#include "worker/train/training_run.h"

namespace paragan::eval {
namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

}  // namespace

// n samples of trainer's EMA generator as WriteSamples writes them (uint8).
absl::StatusOr<Tensor> SamplesFromTrainer(GanTrainer* trainer, int64_t n,
                                          uint64_t seed) {
  std::error_code ec;
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path(ec) /
      absl::StrCat("paragan_eval_", getpid(), "_", seed, "_",
                   reinterpret_cast<uintptr_t>(trainer));
  std::filesystem::create_directories(dir, ec);
  if (ec)
    return absl::InternalError(
        absl::StrCat("cannot create ", dir.string(), ": ", ec.message()));
  const std::string prefix = (dir / "samples").string();
  absl::Status st = WriteSamples(trainer, n, seed, prefix);
  absl::StatusOr<Tensor> images =
      st.ok() ? LoadSamplesNpy(prefix + ".npy") : absl::StatusOr<Tensor>(st);
  std::filesystem::remove_all(dir, ec);
  return images;
}

absl::StatusOr<Tensor> SamplesFromCheckpoint(const std::string& checkpoint,
                                             int64_t n, uint64_t seed,
                                             const std::string& device,
                                             int threads, int64_t* step) {
  if (n < 1)
    return absl::InvalidArgumentError(
        absl::StrCat("--num_samples must be >= 1, got ", n));
  PG_ASSIGN_OR_RETURN(std::vector<NamedArray> arrays,
                      ReadTensorFile(checkpoint));
  PG_ASSIGN_OR_RETURN(std::unique_ptr<Backend> backend,
                      MakeBackend(device, threads));
  PG_ASSIGN_OR_RETURN(std::unique_ptr<GanTrainer> trainer,
                      TrainerFromCheckpoint(arrays, backend.get()));
  if (step) *step = trainer->step();
  return SamplesFromTrainer(trainer.get(), n, seed);
}

absl::StatusOr<ServerSamples> SamplesFromServers(
    const std::vector<std::string>& ps, const std::string& model, int64_t n,
    uint64_t seed, int threads, absl::Duration timeout,
    const ClientSecurity& security) {
  if (n < 1)
    return absl::InvalidArgumentError(
        absl::StrCat("--num_samples must be >= 1, got ", n));
  ServerSamples out;
  const auto t0 = Clock::now();
  PG_ASSIGN_OR_RETURN(ServerTables tables,
                      PullServerTables(ps, timeout, "paragan_eval",
                                       /*with_discriminator=*/false, security));
  out.pull_seconds = Since(t0);
  out.g_version = tables.g_version;
  out.from_ema = tables.have_ema;
  std::unique_ptr<Backend> backend = MakeCpuBackend(std::max(1, threads));
  PG_ASSIGN_OR_RETURN(
      std::unique_ptr<GanTrainer> trainer,
      TrainerFromServerTables(model, /*batch_size=*/64,
                              /*seed=*/0, tables, backend.get()));
  PG_ASSIGN_OR_RETURN(out.images, SamplesFromTrainer(trainer.get(), n, seed));
  return out;
}

}  // namespace paragan::eval

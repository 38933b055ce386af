// paragan_export: writes a trained generator (its EMA, or G itself) as a
// .safetensors file whose tensors are the state_dict of the PyTorch reference
// generator in tests/pytorch/paragan_ref.py (worker/train/pytorch_export.h).

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "common/check.h"
#include "common/flags_usage.h"
#include "common/security_flags.h"
#include "common/tensor_io.h"
#include "worker/engine/model_registry.h"
#include "worker/train/gan_trainer.h"
#include "worker/train/pytorch_export.h"
#include "worker/train/server_export.h"

ABSL_FLAG(std::string, checkpoint, "",
          "checkpoint.pgt written by paragan_train (or paragan_sample --ps)");
ABSL_FLAG(std::string, ps, "",
          "host:port,host:port: every parameter-server shard of a running "
          "job; exports from their tables instead of --checkpoint");
ABSL_FLAG(std::string, generator, "ema",
          "ema (the EMA of G's weights, what paragan_sample draws from) | raw "
          "(G itself)");
ABSL_FLAG(std::string, out, "",
          "Required: the .safetensors file to write (atomically)");
ABSL_FLAG(bool, overwrite, false, "replace --out if it exists");
// Help texts list the registered models (worker/engine/model_registry.h).
ABSL_FLAG(std::string, model, "dcgan32",
          absl::StrCat("--ps: the model the shards hold, ",
                       paragan::ModelFlagHelp()));
ABSL_FLAG(int, image_channels, 1,
          "--ps: image channels of the model (as given to paragan_init)");
ABSL_FLAG(int, num_classes, 10,
          "--ps: classes of the model (as given to paragan_init)");
ABSL_FLAG(int, timeout_s, 60, "--ps: seconds per pull");

namespace {

int Fail(const absl::Status& st) {
  std::fprintf(stderr, "paragan_export: %s\n",
               std::string(st.message()).c_str());
  return 1;
}

int Usage(const std::string& what) {
  std::fprintf(stderr, "paragan_export: %s (--help lists the flags)\n",
               what.c_str());
  return 2;
}

absl::StatusOr<paragan::GeneratorSnapshot> FromCheckpoint(
    const std::string& path, paragan::ExportedGenerator which) {
  if (!std::filesystem::exists(path)) {
    return absl::NotFoundError(absl::StrCat("no checkpoint at ", path));
  }
  PG_ASSIGN_OR_RETURN(std::vector<paragan::NamedArray> arrays,
                      paragan::ReadTensorFile(path));
  // Refuse an unsupported model before building its trainer.
  PG_ASSIGN_OR_RETURN(paragan::ModelConfig model,
                      paragan::ModelConfigFromState(arrays));
  PG_RETURN_IF_ERROR(paragan::CheckPytorchReferenceSupports(model));
  return paragan::SnapshotFromCheckpoint(arrays, which);
}

absl::StatusOr<paragan::GeneratorSnapshot> FromShards(
    const std::string& ps, paragan::ExportedGenerator which) {
  PG_ASSIGN_OR_RETURN(const paragan::ModelSpec* spec,
                      paragan::GetModelSpec(absl::GetFlag(FLAGS_model)));
  paragan::ModelConfig model = spec->config;
  model.image_channels = absl::GetFlag(FLAGS_image_channels);
  model.num_classes = absl::GetFlag(FLAGS_num_classes);
  PG_RETURN_IF_ERROR(paragan::CheckPytorchReferenceSupports(model));
  const std::vector<std::string> shards =
      absl::StrSplit(ps, ',', absl::SkipWhitespace());
  PG_ASSIGN_OR_RETURN(const paragan::ClientSecurity security,
                      paragan::ClientSecurityFromFlags());
  PG_ASSIGN_OR_RETURN(
      paragan::ServerTables tables,
      paragan::PullServerTables(
          shards, absl::Seconds(absl::GetFlag(FLAGS_timeout_s)),
          "paragan_export", /*with_discriminator=*/true, security));
  return paragan::SnapshotFromServerTables(model, tables, which);
}

}  // namespace

int main(int argc, char** argv) {
  paragan::SetUsage(
      absl::StrCat(
          "Writes a trained generator as a .safetensors file of PyTorch "
          "state_dict tensors (tests/pytorch/paragan_ref.py's generators; "
          "tests/pytorch/load_safetensors.py loads it). Example:\n  "
          "paragan_export --checkpoint=runs/dcgan32/checkpoint.pgt "
          "--out=/tmp/g_ema.safetensors\nor, from a running job's parameter "
          "servers:\n  paragan_export --ps=localhost:5000,localhost:5001 "
          "--model=dcgan32 --out=/tmp/g_ema.safetensors\nExportable models: ",
          paragan::PytorchExportableModels(), "\n"),
      "worker/train/export_main.cc");
  absl::ParseCommandLine(argc, argv);
  const std::string out = absl::GetFlag(FLAGS_out);
  const std::string checkpoint = absl::GetFlag(FLAGS_checkpoint);
  const std::string ps = absl::GetFlag(FLAGS_ps);
  if (out.empty()) return Usage("--out is required");
  if (checkpoint.empty() == ps.empty()) {
    return Usage(
        "give one of --checkpoint (a paragan_train checkpoint) or --ps (the "
        "shards of a running job)");
  }
  auto which = paragan::ParseExportedGenerator(absl::GetFlag(FLAGS_generator));
  if (!which.ok()) return Usage(absl::StrCat("--", which.status().message()));
  if (!absl::GetFlag(FLAGS_overwrite) && std::filesystem::exists(out)) {
    return Fail(absl::AlreadyExistsError(
        absl::StrCat(out, " exists (pass --overwrite to replace it)")));
  }
  auto snapshot = checkpoint.empty() ? FromShards(ps, *which)
                                     : FromCheckpoint(checkpoint, *which);
  if (!snapshot.ok()) return Fail(snapshot.status());
  if (absl::Status st = paragan::WritePytorchGenerator(
          *snapshot, out, absl::GetFlag(FLAGS_overwrite));
      !st.ok()) {
    return Fail(st);
  }
  std::error_code ec;
  const auto bytes = std::filesystem::file_size(out, ec);
  std::printf(
      "paragan_export: wrote %s (%s, %s generator at step %lld, from %s: %zu "
      "engine tensors, %lld bytes)\n",
      out.c_str(), snapshot->model.name.c_str(),
      paragan::ExportedGeneratorName(*which),
      static_cast<long long>(snapshot->step), snapshot->source.c_str(),
      snapshot->tensors.size(), static_cast<long long>(ec ? 0 : bytes));
  return 0;
}

#ifndef PARAGAN_WORKER_TRAIN_PYTORCH_EXPORT_H_
#define PARAGAN_WORKER_TRAIN_PYTORCH_EXPORT_H_

// A trained generator (G or its EMA) as a .safetensors file that PyTorch
// users load with `load_state_dict(strict=True)` into the reference models of
// tests/pytorch/paragan_ref.py (DCGANGenerator, BigGANGenerator): the tensor
// names are those modules' state_dict() keys, the shapes PyTorch's.
//
// The engine's canonical layouts already are PyTorch's (Linear [out, in],
// Conv2d [out, in, k, k], ConvTranspose2d [in, out, k, k], Embedding
// [classes, dim], spectral-norm vectors sn_u [out] and sn_v [in * k * k], as
// paragan_ref's hand-written spectral norm keeps them), so no weight is
// transposed. What differs is:
//   - names: the "g." prefix goes; BigGAN's "block<i>." is "blocks.<i>.", its
//     conditional BNs "bn1"/"bn2" are "cbn1"/"cbn2", whose normalization
//     statistics live in a child "bn" ("cbn1.bn.running_mean");
//   - the self-attention gain "attn.gamma" is a 0-d tensor in PyTorch ([1]
//     here);
//   - every BatchNorm2d has a "num_batches_tracked" (I64, 0-d) that the
//     engine does not count: it is written as 0 (it only matters to a
//     BatchNorm with momentum=None, which paragan_ref does not use).
// Metadata (all strings): format=pt, model, generator (ema | raw), step,
// z_dim, num_classes (0 for unconditional models), image_channels,
// resolution, width, attention (true | false), source (checkpoint | ps).

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/network_tensors.h"
#include "common/tensor_io.h"
#include "worker/engine/model.h"
#include "worker/train/safetensors.h"
#include "worker/train/server_export.h"

namespace paragan {

enum class ExportedGenerator { kEma, kRaw };

// "ema" | "raw" -> the enum; anything else is InvalidArgument.
absl::StatusOr<ExportedGenerator> ParseExportedGenerator(absl::string_view s);
const char* ExportedGeneratorName(ExportedGenerator g);

// One generator's tensors with what a PyTorch user needs to rebuild it.
struct GeneratorSnapshot {
  ModelConfig model;
  bool conditional = false;
  ExportedGenerator generator = ExportedGenerator::kEma;
  int64_t step = 0;    // G steps trained (a checkpoint's; the shards' version)
  std::string source;  // "checkpoint" | "ps"
  // Engine names, G's parameters then buffers, in registration order.
  std::vector<TableTensor> tensors;
};

// "dcgan32 (1 image channel: ...), biggan32, biggan64, biggan128": the models
// paragan_ref.py has generators for, for help texts.
const char* PytorchExportableModels();

// OK when paragan_ref.py has a generator for `model`; otherwise
// InvalidArgument naming the model and what is supported.
absl::Status CheckPytorchReferenceSupports(const ModelConfig& model);

// The PyTorch state_dict key of one engine G tensor name, e.g.
// "g.block0.bn1.running_mean" -> "blocks.0.cbn1.bn.running_mean" for
// biggan*. An unknown name is an error (a layer without a mapping is never
// exported under a guessed name).
absl::StatusOr<std::string> PytorchGeneratorKey(const ModelConfig& model,
                                                absl::string_view engine_name);

// The safetensors tensors of a snapshot: mapped names, PyTorch shapes, the
// num_batches_tracked counters.
absl::StatusOr<std::vector<SafetensorsTensor>> PytorchGeneratorTensors(
    const GeneratorSnapshot& snapshot);
std::map<std::string, std::string> PytorchExportMetadata(
    const GeneratorSnapshot& snapshot);

// The generator of a paragan_train checkpoint (arrays from ReadTensorFile):
// its EMA generator (what paragan_sample draws from) or G itself.
absl::StatusOr<GeneratorSnapshot> SnapshotFromCheckpoint(
    const std::vector<NamedArray>& arrays, ExportedGenerator which);

// The generator held by parameter-server shards (PullServerTables) of a run of
// `model`: G_ema's weights with G's buffers (as paragan_sample --ps samples
// it), or G. Every tensor of the model's G must be there with its shape.
// kEma when the shards keep no EMA is FailedPrecondition.
absl::StatusOr<GeneratorSnapshot> SnapshotFromServerTables(
    const ModelConfig& model, const ServerTables& tables,
    ExportedGenerator which);

// CheckPytorchReferenceSupports, PytorchGeneratorTensors, then
// WriteSafetensorsFile (atomic; an existing `path` only with `overwrite`).
absl::Status WritePytorchGenerator(const GeneratorSnapshot& snapshot,
                                   const std::string& path, bool overwrite);

}  // namespace paragan

#endif  // PARAGAN_WORKER_TRAIN_PYTORCH_EXPORT_H_

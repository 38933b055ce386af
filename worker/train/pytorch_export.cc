#include "worker/train/pytorch_export.h"

#include <memory>
#include <set>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/check.h"
#include "worker/engine/backend.h"
#include "worker/engine/params.h"
#include "worker/train/gan_trainer.h"
#include "worker/train/training_run.h"

namespace paragan {
namespace {

constexpr char kSupported[] =
    "dcgan32 (1 image channel: paragan_ref's DCGANGenerator), biggan32, "
    "biggan64, biggan128";

bool IsBigGan(const std::string& name) {
  return name == "biggan32" || name == "biggan64" || name == "biggan128";
}

int BigGanBlocks(int resolution) {
  return resolution == 32 ? 3 : resolution == 64 ? 4 : 5;
}

bool OneOf(absl::string_view s, std::initializer_list<absl::string_view> set) {
  for (absl::string_view x : set) {
    if (s == x) return true;
  }
  return false;
}

// The field names of each PyTorch module kind as paragan_ref has them.
const std::initializer_list<absl::string_view> kBnFields = {
    "weight", "bias", "running_mean", "running_var"};
// SNLinear / SNConv2d with a bias.
const std::initializer_list<absl::string_view> kSnFields = {"weight", "bias",
                                                            "sn_u", "sn_v"};
// SNLinear / SNConv2d without a bias.
const std::initializer_list<absl::string_view> kSnNoBiasFields = {
    "weight", "sn_u", "sn_v"};

absl::StatusOr<std::string> DcganKey(const std::vector<std::string>& p) {
  if (p.size() == 3) {
    if (OneOf(p[1], {"fc", "deconv1", "deconv2", "deconv3"}) &&
        OneOf(p[2], {"weight", "bias"})) {
      return absl::StrCat(p[1], ".", p[2]);
    }
    if (OneOf(p[1], {"bn0", "bn1", "bn2"}) && OneOf(p[2], kBnFields)) {
      return absl::StrCat(p[1], ".", p[2]);
    }
  }
  return absl::NotFoundError("");
}

absl::StatusOr<std::string> BigGanKey(const ModelConfig& m,
                                      const std::vector<std::string>& p) {
  const size_t n = p.size();
  if (n == 3 && p[1] == "shared" && p[2] == "weight") return "shared.weight";
  if (n == 3 && OneOf(p[1], {"linear", "conv_out"}) && OneOf(p[2], kSnFields)) {
    return absl::StrCat(p[1], ".", p[2]);
  }
  if (n == 3 && p[1] == "bn_out" && OneOf(p[2], kBnFields)) {
    return absl::StrCat(p[1], ".", p[2]);
  }
  if (p[1] == "attn") {
    if (n == 3 && p[2] == "gamma") return "attn.gamma";
    if (n == 4 && OneOf(p[2], {"theta", "phi", "g", "o"}) &&
        OneOf(p[3], kSnNoBiasFields)) {
      return absl::StrCat("attn.", p[2], ".", p[3]);
    }
  }
  int block = -1;
  if (absl::StartsWith(p[1], "block") &&
      absl::SimpleAtoi(p[1].substr(5), &block) &&
      p[1] == absl::StrCat("block", block) && block >= 0 &&
      block < BigGanBlocks(m.resolution)) {
    const std::string b = absl::StrCat("blocks.", block, ".");
    if (n == 4 && OneOf(p[2], {"conv1", "conv2", "conv_sc"}) &&
        OneOf(p[3], kSnFields)) {
      return absl::StrCat(b, p[2], ".", p[3]);
    }
    if (OneOf(p[2], {"bn1", "bn2"})) {
      const std::string cbn = absl::StrCat(b, "c", p[2], ".");
      // The normalization of a conditional BN is its child "bn".
      if (n == 4 && OneOf(p[3], {"running_mean", "running_var"})) {
        return absl::StrCat(cbn, "bn.", p[3]);
      }
      if (n == 5 && OneOf(p[3], {"gain", "bias"}) &&
          OneOf(p[4], kSnNoBiasFields)) {
        return absl::StrCat(cbn, p[3], ".", p[4]);
      }
    }
  }
  return absl::NotFoundError("");
}

}  // namespace

absl::StatusOr<ExportedGenerator> ParseExportedGenerator(absl::string_view s) {
  if (s == "ema") return ExportedGenerator::kEma;
  if (s == "raw") return ExportedGenerator::kRaw;
  return absl::InvalidArgumentError(absl::StrCat(
      "generator '", s, "': ema (the EMA of G's weights) or raw (G itself)"));
}

const char* PytorchExportableModels() { return kSupported; }

const char* ExportedGeneratorName(ExportedGenerator g) {
  return g == ExportedGenerator::kEma ? "ema" : "raw";
}

absl::Status CheckPytorchReferenceSupports(const ModelConfig& model) {
  if (IsBigGan(model.name)) return absl::OkStatus();
  if (model.name == "dcgan32") {
    if (model.image_channels == 1) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat(
        "dcgan32 with ", model.image_channels,
        " image channels: tests/pytorch/paragan_ref.py's DCGANGenerator "
        "writes 1 channel; supported: ",
        kSupported));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("model '", model.name,
                   "' has no generator in tests/pytorch/paragan_ref.py to "
                   "export to; supported: ",
                   kSupported));
}

absl::StatusOr<std::string> PytorchGeneratorKey(const ModelConfig& model,
                                                absl::string_view engine_name) {
  PG_RETURN_IF_ERROR(CheckPytorchReferenceSupports(model));
  const std::vector<std::string> parts = absl::StrSplit(engine_name, '.');
  absl::StatusOr<std::string> key = absl::NotFoundError("");
  if (parts.size() >= 3 && parts[0] == "g") {
    key = IsBigGan(model.name) ? BigGanKey(model, parts) : DcganKey(parts);
  }
  if (!key.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        model.name, ": no PyTorch name for generator tensor '", engine_name,
        "' (worker/train/pytorch_export.cc maps the tensors of "
        "tests/pytorch/paragan_ref.py's generators)"));
  }
  return key;
}

absl::StatusOr<std::vector<SafetensorsTensor>> PytorchGeneratorTensors(
    const GeneratorSnapshot& s) {
  PG_RETURN_IF_ERROR(CheckPytorchReferenceSupports(s.model));
  if (s.tensors.empty()) {
    return absl::InvalidArgumentError("the generator has no tensors");
  }
  std::vector<SafetensorsTensor> out;
  std::set<std::string> keys;
  for (const TableTensor& t : s.tensors) {
    PG_ASSIGN_OR_RETURN(std::string key,
                        PytorchGeneratorKey(s.model, t.spec.name));
    if (!keys.insert(key).second) {
      return absl::InternalError(absl::StrCat(
          "two generator tensors map to PyTorch name '", key, "'"));
    }
    Shape shape = t.spec.shape;
    if (key == "attn.gamma") {
      // nn.Parameter(torch.tensor(0.0)): a 0-d tensor.
      if (NumElements(shape) != 1) {
        return absl::InvalidArgumentError(
            absl::StrCat("'", t.spec.name, "' has shape ", ShapeToString(shape),
                         ", expected one value"));
      }
      shape = {};
    }
    PG_ASSIGN_OR_RETURN(SafetensorsTensor st,
                        MakeF32Tensor(key, std::move(shape), t.values));
    out.push_back(std::move(st));
    if (absl::EndsWith(key, ".running_mean")) {
      // BatchNorm2d's batch counter, which the engine does not keep.
      const std::string counter = absl::StrCat(
          key.substr(0, key.size() - std::string(".running_mean").size()),
          ".num_batches_tracked");
      keys.insert(counter);
      PG_ASSIGN_OR_RETURN(SafetensorsTensor c, MakeI64Tensor(counter, {}, {0}));
      out.push_back(std::move(c));
    }
  }
  return out;
}

std::map<std::string, std::string> PytorchExportMetadata(
    const GeneratorSnapshot& s) {
  return {
      {"format", "pt"},
      {"model", s.model.name},
      {"generator", ExportedGeneratorName(s.generator)},
      {"step", absl::StrCat(s.step)},
      {"z_dim", absl::StrCat(s.model.z_dim)},
      {"num_classes", absl::StrCat(s.conditional ? s.model.num_classes : 0)},
      {"image_channels", absl::StrCat(s.model.image_channels)},
      {"resolution", absl::StrCat(s.model.resolution)},
      {"width", absl::StrCat(s.model.width)},
      {"attention", s.model.attention ? "true" : "false"},
      {"source", s.source},
  };
}

absl::StatusOr<GeneratorSnapshot> SnapshotFromCheckpoint(
    const std::vector<NamedArray>& arrays, ExportedGenerator which) {
  std::unique_ptr<Backend> backend = MakeCpuBackend(1);
  PG_ASSIGN_OR_RETURN(std::unique_ptr<GanTrainer> trainer,
                      TrainerFromCheckpoint(arrays, backend.get()));
  GeneratorSnapshot s;
  s.model = trainer->config().model;
  s.conditional = trainer->model().conditional();
  s.generator = which;
  s.step = trainer->step();
  s.source = "checkpoint";
  GanModel& m = which == ExportedGenerator::kEma ? trainer->ema_model()
                                                 : trainer->model();
  s.tensors = NetworkTensors(m.generator());
  return s;
}

absl::StatusOr<GeneratorSnapshot> SnapshotFromServerTables(
    const ModelConfig& model, const ServerTables& tables,
    ExportedGenerator which) {
  if (which == ExportedGenerator::kEma && !tables.have_ema) {
    return absl::FailedPreconditionError(
        absl::StrCat("the shards keep no EMA of G (", tables.no_ema_reason,
                     "); export G itself with --generator=raw"));
  }
  // The model's own G tells which tensors there are and their shapes.
  std::unique_ptr<Backend> backend = MakeCpuBackend(1);
  PG_ASSIGN_OR_RETURN(std::unique_ptr<GanModel> m,
                      MakeModel(model, backend.get()));
  const auto& params =
      which == ExportedGenerator::kEma ? tables.g_ema : tables.g;
  GeneratorSnapshot s;
  s.model = model;
  s.conditional = m->conditional();
  s.generator = which;
  s.step = tables.g_version;
  s.source = "ps";
  for (TableTensorSpec& spec : NetworkSpecs(m->generator())) {
    // Buffers (BN statistics, spectral-norm vectors) come from G: the shards'
    // EMA covers trainable weights only.
    const auto& from = spec.trainable ? params : tables.g;
    const char* table =
        spec.trainable && which == ExportedGenerator::kEma ? "G_ema" : "G";
    auto it = from.find(spec.name);
    if (it == from.end()) {
      return absl::DataLossError(absl::StrCat(
          "no shard returned tensor '", spec.name, "' of table ", table,
          " (do the shards hold a ", model.name, "? see --model)"));
    }
    if (it->second.shape != spec.shape ||
        static_cast<int64_t>(it->second.values.size()) !=
            NumElements(spec.shape)) {
      return absl::DataLossError(absl::StrCat(
          "tensor '", spec.name, "' of table ", table, " has shape ",
          ShapeToString(it->second.shape), ", ", model.name, " has ",
          ShapeToString(spec.shape),
          " (--model, --image_channels or --num_classes differ from the "
          "run's?)"));
    }
    s.tensors.push_back({std::move(spec), it->second.values});
  }
  return s;
}

absl::Status WritePytorchGenerator(const GeneratorSnapshot& snapshot,
                                   const std::string& path, bool overwrite) {
  PG_ASSIGN_OR_RETURN(std::vector<SafetensorsTensor> tensors,
                      PytorchGeneratorTensors(snapshot));
  return WriteSafetensorsFile(path, tensors, PytorchExportMetadata(snapshot),
                              overwrite);
}

}  // namespace paragan

#ifndef PARAGAN_WORKER_ENGINE_MODEL_REGISTRY_H_
#define PARAGAN_WORKER_ENGINE_MODEL_REGISTRY_H_

// The models the engine builds, by name: how to build each, its defaults and
// its hints for the rest of the system. The one place that knows model names:
// MakeModel, DefaultModelConfig, DefaultTrainerConfig, paragan_init's network
// file and every binary's --model help read it. Models register themselves
// from their own files (model_registration.h); the registry is read-only once
// anything has read it. README.md: how to add a model.

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/optim_kernels.h"
#include "worker/engine/backend.h"
#include "worker/engine/losses.h"
#include "worker/engine/model.h"

namespace paragan {

// How a model trains by default (as its paper trains it); TrainerConfig's
// other settings (batch size, EMA decay) do not depend on the model.
struct TrainerDefaults {
  AdamConfig g_adam;
  AdamConfig d_adam;
  int d_steps = 1;  // D updates per G update
  GanLoss loss = GanLoss::kHinge;
};

// Builds the model of `config`. MakeModel has already checked what every
// model needs (image_channels 1 or 3, z_dim >= 1, config.name registered,
// config.resolution the spec's); the factory checks the rest.
using ModelFactory = absl::StatusOr<std::unique_ptr<GanModel>> (*)(
    const ModelConfig& config, Backend* backend);

struct ModelSpec {
  // The --model value, e.g. "biggan64"; also config.name.
  std::string name;
  // One line for help texts, e.g. "BigGAN at 64x64, class-conditional".
  std::string description;
  // DefaultModelConfig(name). The resolution is the only one the model
  // accepts; the rest are defaults callers may change.
  ModelConfig config;
  TrainerDefaults trainer;
  // How long the parameter servers should wait for a silent worker before
  // dropping it: long enough for one step of this model on a few CPU threads.
  // paragan_init writes it into the network file (NetworkInit).
  double worker_lease_s = 30;
  ModelFactory make = nullptr;
};

// Every registered model, ordered by name with numbers compared as numbers
// (biggan32, biggan64, biggan128, dcgan32). The pointers live forever.
const std::vector<const ModelSpec*>& RegisteredModels();

// The spec named `name`, or nullptr.
const ModelSpec* FindModelSpec(absl::string_view name);
// The spec named `name`, or InvalidArgument naming it and listing the known
// models: "unknown model 'x': one of: biggan32, ..., dcgan32".
absl::StatusOr<const ModelSpec*> GetModelSpec(absl::string_view name);

// "biggan32, biggan64, biggan128, dcgan32".
std::string RegisteredModelNames();
// For --model flag help texts: "one of: biggan32, biggan64, ...".
std::string ModelFlagHelp();
// For usage messages: one indented line per model, "  name  description".
std::string ModelDescriptions();

}  // namespace paragan

#endif  // PARAGAN_WORKER_ENGINE_MODEL_REGISTRY_H_

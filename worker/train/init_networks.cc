#include "worker/train/init_networks.h"

#include <memory>

#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "worker/engine/model_registry.h"

namespace paragan {

absl::StatusOr<NetworkInit> MakeNetworkInit(const TrainerConfig& config) {
  PG_ASSIGN_OR_RETURN(const ModelSpec* spec, GetModelSpec(config.model.name));
  std::unique_ptr<Backend> backend = MakeCpuBackend(1);
  PG_ASSIGN_OR_RETURN(std::unique_ptr<GanModel> model,
                      MakeModel(config.model, backend.get()));
  model->Initialize(config.seed);
  NetworkInit init;
  init.model = config.model.name;
  init.signature = ModelSignature(config.model);
  init.g_adam = config.g_adam;
  init.d_adam = config.d_adam;
  init.d_steps_per_g_step = config.d_steps;
  init.worker_lease_s = spec->worker_lease_s;
  init.g = NetworkTensors(model->generator());
  init.d = NetworkTensors(model->discriminator());
  return init;
}

}  // namespace paragan

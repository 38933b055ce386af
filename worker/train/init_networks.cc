#include "worker/train/init_networks.h"

#include <memory>

#include "absl/strings/str_cat.h"
#include "common/check.h"

namespace paragan {

std::string ModelSignature(const ModelConfig& m) {
  return absl::StrCat(m.name, " c=", m.image_channels, " r=", m.resolution,
                      " k=", m.num_classes, " z=", m.z_dim, " w=", m.width,
                      " attn=", m.attention ? 1 : 0);
}

absl::StatusOr<NetworkInit> MakeNetworkInit(const TrainerConfig& config) {
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
  init.g = NetworkTensors(model->generator());
  init.d = NetworkTensors(model->discriminator());
  return init;
}

}  // namespace paragan

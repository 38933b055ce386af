#ifndef PARAGAN_WORKER_TRAIN_INIT_NETWORKS_H_
#define PARAGAN_WORKER_TRAIN_INIT_NETWORKS_H_

// A training job's initial networks as the parameter servers take them
// (common/network_init.h): built here, on the worker side, because only the
// engine knows models.

#include <string>

#include "absl/status/statusor.h"
#include "common/network_init.h"
#include "worker/engine/model.h"
#include "worker/train/gan_trainer.h"

namespace paragan {

// G and D of config.model initialized from config.seed, exactly as
// GanTrainer::Create initializes them, with config's optimizer settings and
// the registered model's worker-lease hint.
absl::StatusOr<NetworkInit> MakeNetworkInit(const TrainerConfig& config);

}  // namespace paragan

#endif  // PARAGAN_WORKER_TRAIN_INIT_NETWORKS_H_

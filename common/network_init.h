#ifndef PARAGAN_COMMON_NETWORK_INIT_H_
#define PARAGAN_COMMON_NETWORK_INIT_H_

// The initial networks of a training job, as one file: G's and D's tensors
// (layout and initial values) and the model's default optimizer settings.
// paragan_init (worker/train) writes it from a model; the parameter servers
// read it, so they hold tables without knowing models or linking the engine.
// A checksummed .pgt tensor file (common/tensor_io.h), written atomically.

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/network_tensors.h"
#include "common/optim_kernels.h"

namespace paragan {

// The lease of a network file that carries none (the servers' old default).
inline constexpr double kDefaultWorkerLeaseS = 30;

struct NetworkInit {
  // Name of the model (the model registry's), e.g. "dcgan32".
  std::string model;
  // The model and every setting that shapes its tensors, e.g.
  // "dcgan32 c=1 r=32 k=10 z=100 w=64 attn=0": checkpoints written under one
  // signature are restored only under the same one.
  std::string signature;
  // The model's defaults, which the servers' flags may override.
  AdamConfig g_adam, d_adam;
  int d_steps_per_g_step = 1;
  // The model's hint for the servers' worker lease (--worker_lease_s < 0):
  // seconds a registered worker may stay silent, long enough for one of the
  // model's steps on a few CPU threads; 0: never drop. Stored as float32, so
  // e.g. 0.1 reads back as 0.1f. Files written before it existed read as 30.
  double worker_lease_s = kDefaultWorkerLeaseS;
  // Parameters then buffers, in the model's registration order.
  std::vector<TableTensor> g, d;
};

absl::Status WriteNetworkInit(const std::string& path, const NetworkInit& init);
// Refuses (naming the file and what is wrong) anything that is not a
// complete, consistent network file: a checkpoint or another .pgt file, a
// missing network, a tensor whose size does not match its shape, duplicate
// names, non-finite values, invalid optimizer settings or a negative lease.
absl::StatusOr<NetworkInit> ReadNetworkInit(const std::string& path);

}  // namespace paragan

#endif  // PARAGAN_COMMON_NETWORK_INIT_H_

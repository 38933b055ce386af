#ifndef PARAGAN_WORKER_ENGINE_OPTIMIZER_H_
#define PARAGAN_WORKER_ENGINE_OPTIMIZER_H_

#include <map>
#include <string>

#include "common/optim_kernels.h"
#include "worker/engine/params.h"

namespace paragan {

// torch.optim.Adam without weight decay, over every parameter of one store.
// Its moments are flat named tensors ("<param>.adam_m", "<param>.adam_v") so
// a parameter server or a checkpoint can hold them.
class Adam {
 public:
  Adam(ParamStore* store, const AdamConfig& config);
  void Step();  // uses and keeps Param::grad

  const AdamConfig& config() const { return config_; }
  int64_t steps() const { return steps_; }
  void set_steps(int64_t steps) { steps_ = steps; }
  // Moment tensors keyed by "<param>.adam_m" / "<param>.adam_v".
  std::map<std::string, Tensor*> state();

 private:
  ParamStore* store_;
  AdamConfig config_;
  int64_t steps_ = 0;
  std::map<std::string, Tensor> m_, v_;
};

}  // namespace paragan

#endif  // PARAGAN_WORKER_ENGINE_OPTIMIZER_H_

#ifndef PARAGAN_WORKER_ENGINE_PARAMS_H_
#define PARAGAN_WORKER_ENGINE_PARAMS_H_

#include <deque>
#include <map>
#include <string>
#include <vector>

#include "common/network_tensors.h"
#include "common/tensor.h"
#include "worker/engine/backend.h"

namespace paragan {

// A trainable tensor and its gradient (same shape, same device).
struct Param {
  std::string name;
  Tensor value;
  Tensor grad;
};

// The flat, named, canonical-layout state of one network (G or D): what a
// parameter server shards and what checkpoints hold. Trainable parameters and
// non-trainable buffers (BN running statistics, spectral-norm vectors) are
// kept apart because only the former get gradients and optimizer state.
// Insertion order is deterministic, so every process lists names alike.
class ParamStore {
 public:
  explicit ParamStore(Backend* backend) : backend_(backend) {}
  ParamStore(const ParamStore&) = delete;
  ParamStore& operator=(const ParamStore&) = delete;

  Backend* backend() const { return backend_; }

  // Registers a zero-initialized parameter / buffer; names must be unique.
  Param* AddParam(const std::string& name, const Shape& shape);
  Tensor* AddBuffer(const std::string& name, const Shape& shape);

  const std::deque<Param>& params() const { return params_; }
  std::deque<Param>& params() { return params_; }
  // Buffers in registration order.
  std::vector<std::pair<std::string, Tensor*>> buffers();
  Param* FindParam(const std::string& name);
  Tensor* FindBuffer(const std::string& name);

  void ZeroGrads();
  int64_t NumParameters() const;

 private:
  Backend* backend_;
  std::deque<Param> params_;
  std::deque<std::pair<std::string, Tensor>> buffers_;
  std::map<std::string, size_t> param_index_, buffer_index_;
};

// Every tensor of one network, parameters (trainable) then buffers, in the
// store's registration order: the layout a parameter server's table holds.
std::vector<TableTensorSpec> NetworkSpecs(ParamStore& store);
// The same with each tensor's current values (downloaded to the host).
std::vector<TableTensor> NetworkTensors(ParamStore& store);

}  // namespace paragan

#endif  // PARAGAN_WORKER_ENGINE_PARAMS_H_

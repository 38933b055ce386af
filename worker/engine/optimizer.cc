#include "worker/engine/optimizer.h"

namespace paragan {

Adam::Adam(ParamStore* store, const AdamConfig& config)
    : store_(store), config_(config) {
  Backend* b = store->backend();
  for (const Param& p : store->params()) {
    m_[p.name] = b->Zeros(p.value.shape());
    v_[p.name] = b->Zeros(p.value.shape());
  }
}

void Adam::Step() {
  ++steps_;
  Backend* b = store_->backend();
  for (Param& p : store_->params()) {
    b->AdamUpdate(config_.lr, config_.beta1, config_.beta2, config_.eps, steps_,
                  p.grad, &p.value, &m_.at(p.name), &v_.at(p.name));
  }
}

std::map<std::string, Tensor*> Adam::state() {
  std::map<std::string, Tensor*> out;
  for (auto& [name, t] : m_) out[name + ".adam_m"] = &t;
  for (auto& [name, t] : v_) out[name + ".adam_v"] = &t;
  return out;
}

}  // namespace paragan

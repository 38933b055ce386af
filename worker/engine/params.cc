#include "worker/engine/params.h"

#include <utility>

#include "common/check.h"

namespace paragan {

Param* ParamStore::AddParam(const std::string& name, const Shape& shape) {
  PG_CHECK(!param_index_.count(name) && !buffer_index_.count(name))
      << "duplicate name " << name;
  param_index_[name] = params_.size();
  params_.push_back({name, backend_->Zeros(shape), backend_->Zeros(shape)});
  return &params_.back();
}

Tensor* ParamStore::AddBuffer(const std::string& name, const Shape& shape) {
  PG_CHECK(!param_index_.count(name) && !buffer_index_.count(name))
      << "duplicate name " << name;
  buffer_index_[name] = buffers_.size();
  buffers_.emplace_back(name, backend_->Zeros(shape));
  return &buffers_.back().second;
}

std::vector<std::pair<std::string, Tensor*>> ParamStore::buffers() {
  std::vector<std::pair<std::string, Tensor*>> out;
  for (auto& [name, t] : buffers_) out.emplace_back(name, &t);
  return out;
}

Param* ParamStore::FindParam(const std::string& name) {
  auto it = param_index_.find(name);
  return it == param_index_.end() ? nullptr : &params_[it->second];
}

Tensor* ParamStore::FindBuffer(const std::string& name) {
  auto it = buffer_index_.find(name);
  return it == buffer_index_.end() ? nullptr : &buffers_[it->second].second;
}

void ParamStore::ZeroGrads() {
  for (Param& p : params_) backend_->Fill(0.0f, &p.grad);
}

int64_t ParamStore::NumParameters() const {
  int64_t n = 0;
  for (const Param& p : params_) n += p.value.numel();
  return n;
}

std::vector<TableTensorSpec> NetworkSpecs(ParamStore& store) {
  std::vector<TableTensorSpec> out;
  for (const Param& p : store.params()) {
    out.push_back({p.name, p.value.shape(), true});
  }
  for (const auto& [name, t] : store.buffers()) {
    out.push_back({name, t->shape(), false});
  }
  return out;
}

std::vector<TableTensor> NetworkTensors(ParamStore& store) {
  std::vector<TableTensor> out;
  for (TableTensorSpec& spec : NetworkSpecs(store)) {
    const Tensor& t = spec.trainable ? store.FindParam(spec.name)->value
                                     : *store.FindBuffer(spec.name);
    std::vector<float> values(static_cast<size_t>(t.numel()));
    if (t.numel() > 0) store.backend()->Download(t, values.data());
    out.push_back({std::move(spec), std::move(values)});
  }
  return out;
}

}  // namespace paragan

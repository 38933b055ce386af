#include "worker/engine/model.h"

#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "common/rng.h"
#include "worker/engine/model_registry.h"

namespace paragan {

std::string ModelSignature(const ModelConfig& m) {
  return absl::StrCat(m.name, " c=", m.image_channels, " r=", m.resolution,
                      " k=", m.num_classes, " z=", m.z_dim, " w=", m.width,
                      " attn=", m.attention ? 1 : 0);
}

ModelConfig DefaultModelConfig(const std::string& name) {
  if (const ModelSpec* spec = FindModelSpec(name)) return spec->config;
  ModelConfig c;
  c.name = name;
  return c;
}

absl::StatusOr<std::unique_ptr<GanModel>> MakeModel(const ModelConfig& config,
                                                    Backend* backend) {
  if (config.image_channels != 1 && config.image_channels != 3)
    return absl::InvalidArgumentError(absl::StrCat(
        "image_channels must be 1 or 3, got ", config.image_channels));
  if (config.z_dim < 1)
    return absl::InvalidArgumentError(
        absl::StrCat("z_dim must be >= 1, got ", config.z_dim));
  PG_ASSIGN_OR_RETURN(const ModelSpec* spec, GetModelSpec(config.name));
  // Each registered name is one architecture at one resolution.
  const int res = spec->config.resolution;
  if (config.resolution != res)
    return absl::InvalidArgumentError(
        absl::StrCat("model '", config.name, "' is defined at ", res, "x", res,
                     ", got resolution ", config.resolution));
  return spec->make(config, backend);
}

void InitSpectralNormVectors(ParamStore* store, Rng* rng) {
  Backend* b = store->backend();
  for (auto& [name, u] : store->buffers()) {
    if (!absl::EndsWith(name, ".sn_u")) continue;
    Tensor host = Tensor::Host(u->shape());
    double norm = 0;
    for (int64_t i = 0; i < host.numel(); ++i) {
      host.data()[i] = rng->Normal();
      norm += double{host.data()[i]} * host.data()[i];
    }
    norm = std::max(std::sqrt(norm), 1e-12);
    for (int64_t i = 0; i < host.numel(); ++i) host.data()[i] /= norm;
    b->Upload(host.data(), u);
    // v = normalize(W^T u) so a forward pass without an update is defined.
    const std::string base = name.substr(0, name.size() - 5);
    Param* w = store->FindParam(base + ".weight");
    Tensor* v = store->FindBuffer(base + ".sn_v");
    if (w == nullptr || v == nullptr) continue;
    const int64_t rows = u->numel(), cols = v->numel();
    b->Gemm(true, false, cols, 1, rows, 1.0f, w->value.data(), u->data(), 0.0f,
            v->data());
    const float vn = std::sqrt(b->Dot(*v, *v));
    b->Scale(1.0f / std::max(vn, 1e-12f), v);
  }
}

}  // namespace paragan

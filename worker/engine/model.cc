#include "worker/engine/model.h"

#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/rng.h"

namespace paragan {

std::unique_ptr<GanModel> MakeDcgan32(const ModelConfig& config,
                                      Backend* backend);
std::unique_ptr<GanModel> MakeBigGan32(const ModelConfig& config,
                                       Backend* backend);

absl::StatusOr<std::unique_ptr<GanModel>> MakeModel(const ModelConfig& config,
                                                    Backend* backend) {
  if (config.image_channels != 1 && config.image_channels != 3)
    return absl::InvalidArgumentError(absl::StrCat(
        "image_channels must be 1 or 3, got ", config.image_channels));
  if (config.z_dim < 1)
    return absl::InvalidArgumentError(
        absl::StrCat("z_dim must be >= 1, got ", config.z_dim));
  if (config.resolution != 32)
    return absl::InvalidArgumentError(absl::StrCat(
        "model '", config.name, "' is defined at 32x32, got resolution ",
        config.resolution));
  if (config.name == "dcgan32") return MakeDcgan32(config, backend);
  if (config.name == "biggan32") {
    if (config.z_dim % 4 != 0)
      return absl::InvalidArgumentError(absl::StrCat(
          "biggan32 splits z into 4 chunks: z_dim must be divisible by 4, got ",
          config.z_dim));
    if (config.num_classes < 1)
      return absl::InvalidArgumentError("biggan32 needs num_classes >= 1");
    if (config.width < 2 || config.width % 2 != 0)
      return absl::InvalidArgumentError(absl::StrCat(
          "biggan32 width must be even and >= 2, got ", config.width));
    return MakeBigGan32(config, backend);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown model '", config.name, "': expected dcgan32 or biggan32"));
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

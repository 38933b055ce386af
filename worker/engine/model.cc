#include "worker/engine/model.h"

#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/rng.h"

namespace paragan {

std::unique_ptr<GanModel> MakeDcgan32(const ModelConfig& config,
                                      Backend* backend);
std::unique_ptr<GanModel> MakeBigGan(const ModelConfig& config,
                                     Backend* backend);

namespace {

// BigGAN at `resolution` has log2(resolution / 4) G blocks and splits z into
// one chunk per block plus one.
int BigGanResolution(const std::string& name) {
  if (name == "biggan32") return 32;
  if (name == "biggan64") return 64;
  if (name == "biggan128") return 128;
  return 0;
}

}  // namespace

ModelConfig DefaultModelConfig(const std::string& name) {
  ModelConfig c;
  c.name = name;
  const int res = BigGanResolution(name);
  if (res > 32) {
    c.resolution = res;
    c.z_dim = 120;  // BigGAN-PyTorch's dim_z at 64 and 128 (5 / 6 chunks)
  }
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
  if (config.name == "dcgan32") {
    if (config.resolution != 32)
      return absl::InvalidArgumentError(
          absl::StrCat("model 'dcgan32' is defined at 32x32, got resolution ",
                       config.resolution));
    return MakeDcgan32(config, backend);
  }
  const int res = BigGanResolution(config.name);
  if (res > 0) {
    const std::string& n = config.name;
    if (config.resolution != res)
      return absl::InvalidArgumentError(
          absl::StrCat("model '", n, "' is defined at ", res, "x", res,
                       ", got resolution ", config.resolution));
    const int chunks = res == 32 ? 4 : res == 64 ? 5 : 6;
    if (config.z_dim % chunks != 0)
      return absl::InvalidArgumentError(absl::StrCat(
          n, " splits z into ", chunks, " chunks: z_dim must be divisible by ",
          chunks, ", got ", config.z_dim));
    if (config.num_classes < 1)
      return absl::InvalidArgumentError(
          absl::StrCat(n, " needs num_classes >= 1"));
    if (config.width < 2 || config.width % 2 != 0)
      return absl::InvalidArgumentError(
          absl::StrCat(n, " width must be even and >= 2, got ", config.width));
    if (config.attention) {
      // Attention splits its channels by 8; at 64 and 128 pixels D attends
      // right after its first block (width channels), G at 4 or 2 x width.
      const int d_attn = (res == 32 ? 4 : 1) * config.width;
      const int g_attn = (res == 128 ? 2 : 4) * config.width;
      if (d_attn % 8 != 0 || g_attn % 8 != 0)
        return absl::InvalidArgumentError(absl::StrCat(
            n, " with attention needs ", res == 32 ? "width" : "a width",
            " giving multiples of 8 channels at the attention layers: width ",
            config.width, " gives ", g_attn, " (G) and ", d_attn,
            " (D); use a multiple of ", res == 32 ? 2 : 8,
            " or --attention=false"));
    }
    return MakeBigGan(config, backend);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown model '", config.name,
                   "': expected dcgan32, biggan32, biggan64 or biggan128"));
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

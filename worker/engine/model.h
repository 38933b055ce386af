#ifndef PARAGAN_WORKER_ENGINE_MODEL_H_
#define PARAGAN_WORKER_ENGINE_MODEL_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/engine/backend.h"
#include "worker/engine/layers.h"
#include "worker/engine/params.h"

namespace paragan {

struct ModelConfig {
  std::string name = "dcgan32";  // a registered model (model_registry.h)
  int image_channels = 1;
  int resolution = 32;
  int num_classes = 10;  // used by conditional models
  int z_dim = 128;
  int width = 64;         // BigGAN channel multiplier ("ch")
  bool attention = true;  // BigGAN self-attention at resolution / 2
};

// A GAN: generator G and discriminator D, each with its own ParamStore (the
// two tables a parameter server holds). Forward passes cache activations for
// the Backward that follows them.
class GanModel {
 public:
  GanModel(const ModelConfig& config, Backend* backend)
      : config_(config), backend_(backend), g_(backend), d_(backend) {}
  virtual ~GanModel() = default;

  const ModelConfig& config() const { return config_; }
  virtual bool conditional() const = 0;
  Backend* backend() const { return backend_; }
  ParamStore& generator() { return g_; }
  ParamStore& discriminator() { return d_; }

  // Fresh weights from `seed` (PyTorch-default or orthogonal, per model).
  virtual void Initialize(uint64_t seed) = 0;
  // z [N, z_dim] -> images [N, C, R, R] in [-1, 1].
  virtual Tensor Generate(const Tensor& z, const std::vector<int>& labels,
                          const Mode& mode) = 0;
  // Accumulates G's parameter gradients from dLoss/dimages.
  virtual void GenerateBackward(const Tensor& dimages) = 0;
  // images [N, C, R, R] -> logits [N, 1].
  virtual Tensor Discriminate(const Tensor& images,
                              const std::vector<int>& labels,
                              const Mode& mode) = 0;
  // Returns dLoss/dimages; accumulates D's parameter gradients when the
  // forward pass ran with mode.param_grads.
  virtual Tensor DiscriminateBackward(const Tensor& dlogits) = 0;

 protected:
  ModelConfig config_;
  Backend* backend_;
  ParamStore g_, d_;
};

// The registered model config.name (model_registry.h), after the checks
// every model needs; an unknown name is refused with the list of known ones.
absl::StatusOr<std::unique_ptr<GanModel>> MakeModel(const ModelConfig& config,
                                                    Backend* backend);
// The registered model's defaults (its ModelSpec::config: e.g. the
// resolution, and BigGAN's z_dim of 120 at 64 and 128 pixels). Unknown names
// keep ModelConfig's defaults with `name` (and MakeModel rejects them).
ModelConfig DefaultModelConfig(const std::string& name);

// The model and every setting that shapes its tensors, e.g.
// "dcgan32 c=1 r=32 k=10 z=128 w=64 attn=1": what training checkpoints and
// the servers' network files (hence shard checkpoints) are signed with.
std::string ModelSignature(const ModelConfig& model);

// Sets every spectral-norm u to a random unit vector and v to match (as
// torch.nn.utils.spectral_norm does at construction).
void InitSpectralNormVectors(ParamStore* store, Rng* rng);

}  // namespace paragan

#endif  // PARAGAN_WORKER_ENGINE_MODEL_H_

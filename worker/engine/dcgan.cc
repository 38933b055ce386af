// DCGAN-32, the parity model (layer for layer the PyTorch reference in
// tests/pytorch/paragan_ref.py).

#include <memory>

#include "absl/strings/match.h"
#include "common/check.h"
#include "common/rng.h"
#include "worker/engine/model.h"
#include "worker/engine/model_registration.h"

namespace paragan {
namespace {

class Dcgan32 : public GanModel {
 public:
  Dcgan32(const ModelConfig& c, Backend* b)
      : GanModel(c, b),
        fc_(&g_, "g.fc", c.z_dim, 256 * 4 * 4, true, false),
        bn0_(&g_, "g.bn0", 256, true),
        deconv1_(&g_, "g.deconv1", 256, 128, 4, 2, 1, true),
        bn1_(&g_, "g.bn1", 128, true),
        deconv2_(&g_, "g.deconv2", 128, 64, 4, 2, 1, true),
        bn2_(&g_, "g.bn2", 64, true),
        deconv3_(&g_, "g.deconv3", 64, c.image_channels, 4, 2, 1, true),
        relu0_(b, Activation::kRelu),
        relu1_(b, Activation::kRelu),
        relu2_(b, Activation::kRelu),
        tanh_(b, Activation::kTanh),
        conv1_(&d_, "d.conv1", c.image_channels, 64, 4, 2, 1, true, true),
        conv2_(&d_, "d.conv2", 64, 128, 4, 2, 1, true, true),
        conv3_(&d_, "d.conv3", 128, 256, 4, 2, 1, true, true),
        dfc_(&d_, "d.fc", 256 * 4 * 4, 1, true, true),
        lrelu1_(b, Activation::kLeakyRelu, 0.2f),
        lrelu2_(b, Activation::kLeakyRelu, 0.2f),
        lrelu3_(b, Activation::kLeakyRelu, 0.2f) {}

  bool conditional() const override { return false; }

  void Initialize(uint64_t seed) override {
    Rng rng(seed, /*stream=*/1);
    for (ParamStore* store : {&g_, &d_}) {
      for (Param& p : store->params()) {
        const std::string& n = p.name;
        const bool is_bn = n.find(".bn") != std::string::npos;
        if (is_bn) {
          InitConstant(backend_, &p,
                       absl::EndsWith(n, ".weight") ? 1.0f : 0.0f);
          continue;
        }
        // fan_in as PyTorch computes it: dim 1 times the kernel area (for a
        // transposed convolution dim 1 is its output channels).
        int64_t fan_in = 1;
        const std::string weight_name = n.substr(0, n.rfind('.')) + ".weight";
        const Shape& ws = store->FindParam(weight_name)->value.shape();
        for (size_t i = 1; i < ws.size(); ++i) fan_in *= ws[i];
        InitUniformFanIn(backend_, &p, fan_in, &rng);
      }
    }
    InitSpectralNormVectors(&d_, &rng);
  }

  Tensor Generate(const Tensor& z, const std::vector<int>&,
                  const Mode& mode) override {
    PG_CHECK(z.ndim() == 2 && z.dim(1) == config_.z_dim)
        << "z must be [N, " << config_.z_dim << "]";
    const int64_t n = z.dim(0);
    Tensor h = fc_.Forward(z, mode).Reshape({n, 256, 4, 4});
    h = relu0_.Forward(bn0_.Forward(h, mode));
    h = relu1_.Forward(bn1_.Forward(deconv1_.Forward(h, mode), mode));
    h = relu2_.Forward(bn2_.Forward(deconv2_.Forward(h, mode), mode));
    return tanh_.Forward(deconv3_.Forward(h, mode));
  }

  void GenerateBackward(const Tensor& dimages) override {
    Tensor d = deconv3_.Backward(tanh_.Backward(dimages));
    d = deconv2_.Backward(bn2_.Backward(relu2_.Backward(d)));
    d = deconv1_.Backward(bn1_.Backward(relu1_.Backward(d)));
    d = bn0_.Backward(relu0_.Backward(d));
    fc_.Backward(d.Reshape({d.dim(0), 256 * 4 * 4}));
  }

  Tensor Discriminate(const Tensor& x, const std::vector<int>&,
                      const Mode& mode) override {
    const int64_t n = x.dim(0);
    Tensor h = lrelu1_.Forward(conv1_.Forward(x, mode));
    Mode inner = mode;
    inner.input_grads = true;
    h = lrelu2_.Forward(conv2_.Forward(h, inner));
    h = lrelu3_.Forward(conv3_.Forward(h, inner));
    return dfc_.Forward(h.Reshape({n, 256 * 4 * 4}), inner);
  }

  Tensor DiscriminateBackward(const Tensor& dlogits) override {
    Tensor d = dfc_.Backward(dlogits);
    d = conv3_.Backward(lrelu3_.Backward(d.Reshape({d.dim(0), 256, 4, 4})));
    d = conv2_.Backward(lrelu2_.Backward(d));
    return conv1_.Backward(lrelu1_.Backward(d));
  }

 private:
  Linear fc_;
  BatchNorm bn0_;
  ConvTranspose2d deconv1_;
  BatchNorm bn1_;
  ConvTranspose2d deconv2_;
  BatchNorm bn2_;
  ConvTranspose2d deconv3_;
  ActivationLayer relu0_, relu1_, relu2_, tanh_;
  Conv2d conv1_, conv2_, conv3_;
  Linear dfc_;
  ActivationLayer lrelu1_, lrelu2_, lrelu3_;
};

absl::StatusOr<std::unique_ptr<GanModel>> MakeDcgan32(const ModelConfig& config,
                                                      Backend* backend) {
  return std::make_unique<Dcgan32>(config, backend);
}

// ModelConfig's, AdamConfig's and the lease's defaults are DCGAN-32's.
ModelSpec Dcgan32Spec() {
  ModelSpec s;
  s.name = "dcgan32";
  s.description =
      "DCGAN at 32x32, unconditional (layer for layer the PyTorch parity "
      "reference)";
  s.make = &MakeDcgan32;
  return s;
}

const ModelRegistrar kRegisterDcgan32(Dcgan32Spec());

}  // namespace
}  // namespace paragan

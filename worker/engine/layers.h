#ifndef PARAGAN_WORKER_ENGINE_LAYERS_H_
#define PARAGAN_WORKER_ENGINE_LAYERS_H_

// Layers with explicit forward and backward passes. A layer caches what its
// backward pass needs during Forward, so each Forward is followed by at most
// one Backward. Parameter gradients accumulate (+=) into Param::grad, so
// several forward/backward pairs can contribute before an optimizer step.

#include <memory>
#include <string>
#include <vector>

#include "worker/engine/backend.h"
#include "worker/engine/params.h"

namespace paragan {

// How a forward pass runs.
struct Mode {
  bool training = true;     // batch statistics in BN (and running-stat updates)
  bool update_sn = true;    // one power iteration in spectral-norm layers
  bool param_grads = true;  // whether Backward accumulates parameter grads
  // Whether the model's input needs a gradient (false in D's own step, where
  // nothing upstream of the images trains). Honored by a model's first layer.
  bool input_grads = true;

  // The passes of a GAN step, named (GanTrainer uses them):
  // G's forward inside D's step: batch statistics, G's running statistics
  // move, no power iteration, no parameter gradients.
  static constexpr Mode FakesForDStep() { return {true, false, false, true}; }
  // D's own step on real and fake: everything trains except the images.
  static constexpr Mode DStep() { return {true, true, true, false}; }
  // G's forward in G's step.
  static constexpr Mode GStep() { return {true, true, true, true}; }
  // D inside G's step: batch statistics, D's vectors and weights fixed; the
  // gradient flows to the images only.
  static constexpr Mode DForGStep() { return {true, false, false, true}; }
  // Sampling (the EMA generator): running statistics, nothing moves.
  static constexpr Mode Inference() { return {false, false, false, true}; }
};

// W / sigma(W) with one power iteration per update (Miyato et al. 2018), the
// persistent vectors u [rows] and v [cols] stored as buffers "<name>.sn_u",
// "<name>.sn_v". With `enabled` false it is the identity on W.
class SpectralNorm {
 public:
  SpectralNorm(ParamStore* store, const std::string& name, Param* weight,
               int64_t rows, bool enabled);
  // Returns the weight to use in this forward pass.
  const Tensor& Forward(bool update_u);
  // dW_sn -> accumulates dW into weight->grad.
  void Backward(const Tensor& dw_sn);
  // Re-derives v from u (after weights/u are set from outside).
  void ResetV();
  bool enabled() const { return enabled_; }

 private:
  Backend* b_;
  Param* weight_;
  bool enabled_;
  int64_t rows_, cols_;
  Tensor* u_ = nullptr;
  Tensor* v_ = nullptr;
  Tensor w_sn_, wv_, scratch_;
  Tensor sigma_;  // [1], on the backend's device
  bool v_ready_ = false;
};

class Linear {
 public:
  Linear(ParamStore* store, const std::string& name, int in, int out, bool bias,
         bool spectral_norm);
  Tensor Forward(const Tensor& x, const Mode& mode);  // [N, in] -> [N, out]
  Tensor Backward(const Tensor& dy);
  Param* weight() { return weight_; }
  Param* bias() { return bias_; }

 private:
  Backend* b_;
  int in_, out_;
  Param* weight_;
  Param* bias_ = nullptr;
  SpectralNorm sn_;
  Tensor x_;
  const Tensor* w_used_ = nullptr;
  bool param_grads_ = true;
};

class Conv2d {
 public:
  Conv2d(ParamStore* store, const std::string& name, int in, int out,
         int kernel, int stride, int padding, bool bias, bool spectral_norm);
  Tensor Forward(const Tensor& x, const Mode& mode);
  // Returns an empty tensor when the forward ran without mode.input_grads.
  Tensor Backward(const Tensor& dy);
  Param* weight() { return weight_; }

 private:
  Backend* b_;
  int in_, out_, kernel_, stride_, padding_;
  Param* weight_;
  Param* bias_ = nullptr;
  SpectralNorm sn_;
  Tensor x_, dw_, db_;
  ConvGeometry geom_;
  const Tensor* w_used_ = nullptr;
  bool param_grads_ = true;
  bool input_grads_ = true;
};

// PyTorch ConvTranspose2d: weight [in, out, K, K]; output size
// (H - 1) * stride - 2 * padding + K.
class ConvTranspose2d {
 public:
  ConvTranspose2d(ParamStore* store, const std::string& name, int in, int out,
                  int kernel, int stride, int padding, bool bias);
  Tensor Forward(const Tensor& x, const Mode& mode);
  Tensor Backward(const Tensor& dy);

 private:
  Backend* b_;
  int in_, out_, kernel_, stride_, padding_;
  Param* weight_;
  Param* bias_ = nullptr;
  Tensor x_, dw_, db_;
  ConvGeometry geom_;  // of the equivalent convolution (output -> input)
  bool param_grads_ = true;
};

// BatchNorm2d (also for [N, C]): batch statistics in training (updating the
// running statistics), running statistics in eval. With affine, a learned
// per-channel gain and bias (PyTorch "weight"/"bias").
class BatchNorm {
 public:
  BatchNorm(ParamStore* store, const std::string& name, int channels,
            bool affine, float eps = 1e-5f, float momentum = 0.1f);
  Tensor Forward(const Tensor& x, const Mode& mode);
  Tensor Backward(const Tensor& dy);
  // Normalization only (no affine), for conditional BN.
  Tensor Normalize(const Tensor& x, const Mode& mode);
  Tensor NormalizeBackward(const Tensor& dxhat);

 private:
  Backend* b_;
  int channels_;
  float eps_, momentum_;
  Param* gamma_ = nullptr;
  Param* beta_ = nullptr;
  Tensor* running_mean_;
  Tensor* running_var_;
  Tensor mean_, inv_std_, xhat_, dgamma_, dbeta_;
  bool training_ = true;
  bool param_grads_ = true;
};

// BigGAN conditional BN: y = BN(x) * (1 + gain(cond)) + bias(cond), with
// gain and bias linear (spectral-normalized, no bias) maps of the condition.
class ConditionalBatchNorm {
 public:
  ConditionalBatchNorm(ParamStore* store, const std::string& name, int channels,
                       int cond_dim, bool spectral_norm);
  Tensor Forward(const Tensor& x, const Tensor& cond, const Mode& mode);
  // Returns dx; adds the condition's gradient into *dcond.
  Tensor Backward(const Tensor& dy, Tensor* dcond);

 private:
  Backend* b_;
  BatchNorm bn_;
  Linear gain_, bias_;
  Tensor xhat_, gamma_, beta_;
};

class ActivationLayer {
 public:
  ActivationLayer(Backend* b, Activation act, float slope = 0.0f)
      : b_(b), act_(act), slope_(slope) {}
  Tensor Forward(const Tensor& x);
  Tensor Backward(const Tensor& dy);

 private:
  Backend* b_;
  Activation act_;
  float slope_;
  Tensor x_, y_;
};

class Upsample2x {
 public:
  explicit Upsample2x(Backend* b) : b_(b) {}
  Tensor Forward(const Tensor& x);
  Tensor Backward(const Tensor& dy);

 private:
  Backend* b_;
  Shape in_shape_;
};

class AvgPool2x {
 public:
  explicit AvgPool2x(Backend* b) : b_(b) {}
  Tensor Forward(const Tensor& x);
  Tensor Backward(const Tensor& dy);

 private:
  Backend* b_;
  Shape in_shape_;
};

class MaxPool2x {
 public:
  explicit MaxPool2x(Backend* b) : b_(b) {}
  Tensor Forward(const Tensor& x);
  Tensor Backward(const Tensor& dy);

 private:
  Backend* b_;
  Tensor x_;
};

// Global sum pooling [N, C, H, W] -> [N, C].
class SpatialSum {
 public:
  explicit SpatialSum(Backend* b) : b_(b) {}
  Tensor Forward(const Tensor& x);
  Tensor Backward(const Tensor& dy);

 private:
  Backend* b_;
  Shape in_shape_;
};

class Embedding {
 public:
  Embedding(ParamStore* store, const std::string& name, int vocab, int dim,
            bool spectral_norm);
  Tensor Forward(const std::vector<int>& ids, const Mode& mode);
  void Backward(const Tensor& dy);
  Param* weight() { return weight_; }

 private:
  Backend* b_;
  int vocab_, dim_;
  Param* weight_;
  SpectralNorm sn_;
  std::vector<int> ids_;
  Tensor dw_;
  bool param_grads_ = true;
};

// SAGAN / BigGAN self-attention: x + gamma * o(g(x)_pooled softmax(theta^T
// phi_pooled)^T), all 1x1 convolutions spectral-normalized and bias-free.
class SelfAttention {
 public:
  SelfAttention(ParamStore* store, const std::string& name, int channels,
                bool spectral_norm);
  Tensor Forward(const Tensor& x, const Mode& mode);
  Tensor Backward(const Tensor& dy);

 private:
  Backend* b_;
  int channels_;
  Conv2d theta_, phi_, g_, o_;
  MaxPool2x pool_phi_, pool_g_;
  Param* gamma_;
  Tensor theta_out_, phi_pooled_, g_pooled_, beta_, attn_out_, o_out_;
  Shape x_shape_;
  bool param_grads_ = true;
};

// Weight initializers (host RNG, deterministic from the seed).
class Rng;
// PyTorch's default for Linear/Conv: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
void InitUniformFanIn(Backend* b, Param* p, int64_t fan_in, Rng* rng);
// Orthogonal rows/columns of the [rows, numel/rows] matrix (BigGAN G_init).
void InitOrthogonal(Backend* b, Param* p, Rng* rng);
void InitConstant(Backend* b, Param* p, float value);

}  // namespace paragan

#endif  // PARAGAN_WORKER_ENGINE_LAYERS_H_

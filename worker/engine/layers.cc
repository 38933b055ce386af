#include "worker/engine/layers.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "common/check.h"
#include "common/rng.h"

namespace paragan {
namespace {}  // namespace

// ---------------------------------------------------------------- SpectralNorm

SpectralNorm::SpectralNorm(ParamStore* store, const std::string& name,
                           Param* weight, int64_t rows, bool enabled)
    : b_(store->backend()),
      weight_(weight),
      enabled_(enabled),
      rows_(rows),
      cols_(weight->value.numel() / rows) {
  if (!enabled_) return;
  u_ = store->AddBuffer(name + ".sn_u", {rows_});
  v_ = store->AddBuffer(name + ".sn_v", {cols_});
  w_sn_ = b_->Alloc(weight->value.shape());
  wv_ = b_->Alloc({rows_});
  sigma_ = b_->Zeros({1});
  scratch_ = b_->Alloc(weight->value.shape());
  b_->Fill(1.0f / std::sqrt(static_cast<float>(rows_)), u_);
}

void SpectralNorm::ResetV() {
  if (!enabled_) return;
  const Tensor& w = weight_->value;
  b_->Gemm(true, false, cols_, 1, rows_, 1.0f, w.data(), u_->data(), 0.0f,
           v_->data());
  b_->NormalizeVector(v_);
}

const Tensor& SpectralNorm::Forward(bool update_u) {
  if (!enabled_) return weight_->value;
  const Tensor& w = weight_->value;
  if (!v_ready_) {
    // v is all zeros only when nothing has set it yet (no initializer, no
    // checkpoint): derive it from u so a forward pass without an update is
    // defined. A v that was restored or initialized is the state the next
    // pass must use (as PyTorch keeps weight_v), so it is left alone;
    // re-deriving it would make a resumed run diverge from the original.
    if (!update_u && b_->Dot(*v_, *v_) == 0.0f) ResetV();
    v_ready_ = true;
  }
  if (update_u) {
    // v = normalize(W^T u); u = normalize(W v).
    b_->Gemm(true, false, cols_, 1, rows_, 1.0f, w.data(), u_->data(), 0.0f,
             v_->data());
    b_->NormalizeVector(v_);
    b_->Gemm(false, false, rows_, 1, cols_, 1.0f, w.data(), v_->data(), 0.0f,
             u_->data());
    b_->NormalizeVector(u_);
  }
  b_->Gemm(false, false, rows_, 1, cols_, 1.0f, w.data(), v_->data(), 0.0f,
           wv_.data());
  b_->SpectralNormWeight(*u_, wv_, w, &sigma_, &w_sn_);
  return w_sn_;
}

void SpectralNorm::Backward(const Tensor& dw_sn) {
  if (!enabled_) {
    b_->AddTo(dw_sn, &weight_->grad);
    return;
  }
  // u and v are constants: dW = (G - <G, W_sn> u v^T) / sigma.
  b_->SpectralNormBackward(dw_sn, w_sn_, *u_, *v_, sigma_, &scratch_);
  b_->AddTo(scratch_, &weight_->grad);
}

// ---------------------------------------------------------------------- Linear

Linear::Linear(ParamStore* store, const std::string& name, int in, int out,
               bool bias, bool spectral_norm)
    : b_(store->backend()),
      in_(in),
      out_(out),
      weight_(store->AddParam(name + ".weight", {out, in})),
      bias_(bias ? store->AddParam(name + ".bias", {out}) : nullptr),
      sn_(store, name, weight_, out, spectral_norm) {}

Tensor Linear::Forward(const Tensor& x, const Mode& mode) {
  PG_CHECK(x.ndim() == 2 && x.dim(1) == in_)
      << "Linear expects [N, " << in_ << "], got " << ShapeToString(x.shape());
  const int n = static_cast<int>(x.dim(0));
  x_ = x;
  param_grads_ = mode.param_grads;
  w_used_ = &sn_.Forward(mode.training && mode.update_sn);
  Tensor y = b_->Alloc({n, out_});
  b_->Gemm(false, true, n, out_, in_, 1.0f, x.data(), w_used_->data(), 0.0f,
           y.data());
  if (bias_) b_->AddRowBias(bias_->value, &y);
  return y;
}

Tensor Linear::Backward(const Tensor& dy) {
  const int n = static_cast<int>(x_.dim(0));
  Tensor dx = b_->Alloc({n, in_});
  b_->Gemm(false, false, n, in_, out_, 1.0f, dy.data(), w_used_->data(), 0.0f,
           dx.data());
  if (param_grads_) {
    Tensor dw = b_->Alloc({out_, in_});
    b_->Gemm(true, false, out_, in_, n, 1.0f, dy.data(), x_.data(), 0.0f,
             dw.data());
    sn_.Backward(dw);
    if (bias_) {
      Tensor db = b_->Alloc({out_});
      b_->RowBiasGrad(dy, &db);
      b_->AddTo(db, &bias_->grad);
    }
  }
  return dx;
}

// ---------------------------------------------------------------------- Conv2d

Conv2d::Conv2d(ParamStore* store, const std::string& name, int in, int out,
               int kernel, int stride, int padding, bool bias,
               bool spectral_norm)
    : b_(store->backend()),
      in_(in),
      out_(out),
      kernel_(kernel),
      stride_(stride),
      padding_(padding),
      weight_(store->AddParam(name + ".weight", {out, in, kernel, kernel})),
      bias_(bias ? store->AddParam(name + ".bias", {out}) : nullptr),
      sn_(store, name, weight_, out, spectral_norm) {
  dw_ = b_->Alloc(weight_->value.shape());
  if (bias_) db_ = b_->Alloc({out});
}

Tensor Conv2d::Forward(const Tensor& x, const Mode& mode) {
  PG_CHECK(x.ndim() == 4 && x.dim(1) == in_)
      << "Conv2d expects [N, " << in_ << ", H, W], got "
      << ShapeToString(x.shape());
  geom_ = {static_cast<int>(x.dim(0)),
           in_,
           static_cast<int>(x.dim(2)),
           static_cast<int>(x.dim(3)),
           out_,
           kernel_,
           stride_,
           padding_};
  PG_CHECK(geom_.out_h() > 0 && geom_.out_w() > 0) << "Conv2d: input too small";
  x_ = x;
  param_grads_ = mode.param_grads;
  input_grads_ = mode.input_grads;
  w_used_ = &sn_.Forward(mode.training && mode.update_sn);
  Tensor y = b_->Alloc({geom_.n, out_, geom_.out_h(), geom_.out_w()});
  b_->ConvForward(geom_, x, *w_used_, bias_ ? &bias_->value : nullptr, &y);
  return y;
}

Tensor Conv2d::Backward(const Tensor& dy) {
  Tensor dx;
  if (input_grads_) {
    dx = b_->Alloc(x_.shape());
    b_->ConvBackwardData(geom_, dy, *w_used_, &dx);
  }
  if (param_grads_) {
    b_->ConvBackwardWeights(geom_, x_, dy, &dw_, bias_ ? &db_ : nullptr);
    sn_.Backward(dw_);
    if (bias_) b_->AddTo(db_, &bias_->grad);
  }
  return dx;
}

// ------------------------------------------------------------- ConvTranspose2d

ConvTranspose2d::ConvTranspose2d(ParamStore* store, const std::string& name,
                                 int in, int out, int kernel, int stride,
                                 int padding, bool bias)
    : b_(store->backend()),
      in_(in),
      out_(out),
      kernel_(kernel),
      stride_(stride),
      padding_(padding),
      weight_(store->AddParam(name + ".weight", {in, out, kernel, kernel})),
      bias_(bias ? store->AddParam(name + ".bias", {out}) : nullptr) {
  dw_ = b_->Alloc(weight_->value.shape());
  if (bias_) db_ = b_->Alloc({out});
}

Tensor ConvTranspose2d::Forward(const Tensor& x, const Mode& mode) {
  PG_CHECK(x.ndim() == 4 && x.dim(1) == in_)
      << "ConvTranspose2d expects [N, " << in_ << ", H, W], got "
      << ShapeToString(x.shape());
  const int h = static_cast<int>(x.dim(2)), w = static_cast<int>(x.dim(3));
  const int ho = (h - 1) * stride_ - 2 * padding_ + kernel_;
  const int wo = (w - 1) * stride_ - 2 * padding_ + kernel_;
  // A transposed convolution is the data-gradient of the convolution that
  // maps its output back to its input.
  geom_ = {static_cast<int>(x.dim(0)),
           out_,
           ho,
           wo,
           in_,
           kernel_,
           stride_,
           padding_};
  PG_CHECK(geom_.out_h() == h && geom_.out_w() == w)
      << "ConvTranspose2d: inconsistent geometry";
  x_ = x;
  param_grads_ = mode.param_grads;
  Tensor y = b_->Alloc({geom_.n, out_, ho, wo});
  b_->ConvBackwardData(geom_, x, weight_->value, &y);
  if (bias_) b_->AddChannelBias(bias_->value, &y);
  return y;
}

Tensor ConvTranspose2d::Backward(const Tensor& dy) {
  Tensor dx = b_->Alloc(x_.shape());
  b_->ConvForward(geom_, dy, weight_->value, nullptr, &dx);
  if (param_grads_) {
    b_->ConvBackwardWeights(geom_, dy, x_, &dw_, nullptr);
    b_->AddTo(dw_, &weight_->grad);
    if (bias_) {
      b_->ChannelBiasGrad(dy, &db_);
      b_->AddTo(db_, &bias_->grad);
    }
  }
  return dx;
}

// ------------------------------------------------------------------- BatchNorm

BatchNorm::BatchNorm(ParamStore* store, const std::string& name, int channels,
                     bool affine, float eps, float momentum)
    : b_(store->backend()),
      channels_(channels),
      eps_(eps),
      momentum_(momentum) {
  if (affine) {
    gamma_ = store->AddParam(name + ".weight", {channels});
    beta_ = store->AddParam(name + ".bias", {channels});
    b_->Fill(1.0f, &gamma_->value);
    dgamma_ = b_->Alloc({channels});
    dbeta_ = b_->Alloc({channels});
  }
  running_mean_ = store->AddBuffer(name + ".running_mean", {channels});
  running_var_ = store->AddBuffer(name + ".running_var", {channels});
  b_->Fill(1.0f, running_var_);
  mean_ = b_->Alloc({channels});
  inv_std_ = b_->Alloc({channels});
}

Tensor BatchNorm::Normalize(const Tensor& x, const Mode& mode) {
  PG_CHECK(x.ndim() >= 2 && x.dim(1) == channels_)
      << "BatchNorm expects [N, " << channels_ << ", ...], got "
      << ShapeToString(x.shape());
  training_ = mode.training;
  param_grads_ = mode.param_grads;
  xhat_ = b_->Alloc(x.shape());
  if (training_) {
    b_->BatchNormStats(x, eps_, &mean_, &inv_std_, &xhat_);
    b_->UpdateRunningStats(mean_, inv_std_, eps_, x.numel() / channels_,
                           momentum_, running_mean_, running_var_);
  } else {
    b_->InvStd(*running_var_, eps_, &inv_std_);
    b_->BatchNormApply(x, *running_mean_, inv_std_, &xhat_);
  }
  return xhat_;
}

Tensor BatchNorm::NormalizeBackward(const Tensor& dxhat) {
  Tensor dx = b_->Alloc(dxhat.shape());
  if (training_) {
    b_->BatchNormBackward(dxhat, xhat_, inv_std_, &dx);
  } else {
    Tensor zero = b_->Zeros({channels_});
    b_->ChannelAffine(dxhat, inv_std_, zero, &dx);
  }
  return dx;
}

Tensor BatchNorm::Forward(const Tensor& x, const Mode& mode) {
  Tensor xhat = Normalize(x, mode);
  if (!gamma_) return xhat;
  Tensor y = b_->Alloc(x.shape());
  b_->ChannelAffine(xhat, gamma_->value, beta_->value, &y);
  return y;
}

Tensor BatchNorm::Backward(const Tensor& dy) {
  if (!gamma_) return NormalizeBackward(dy);
  Tensor dxhat = b_->Alloc(dy.shape());
  b_->ChannelAffineBackward(dy, xhat_, gamma_->value, &dxhat, &dgamma_,
                            &dbeta_);
  if (param_grads_) {
    b_->AddTo(dgamma_, &gamma_->grad);
    b_->AddTo(dbeta_, &beta_->grad);
  }
  return NormalizeBackward(dxhat);
}

// ------------------------------------------------------ ConditionalBatchNorm

ConditionalBatchNorm::ConditionalBatchNorm(ParamStore* store,
                                           const std::string& name,
                                           int channels, int cond_dim,
                                           bool spectral_norm)
    : b_(store->backend()),
      bn_(store, name, channels, /*affine=*/false),
      gain_(store, name + ".gain", cond_dim, channels, false, spectral_norm),
      bias_(store, name + ".bias", cond_dim, channels, false, spectral_norm) {}

Tensor ConditionalBatchNorm::Forward(const Tensor& x, const Tensor& cond,
                                     const Mode& mode) {
  xhat_ = bn_.Normalize(x, mode);
  Tensor gain = gain_.Forward(cond, mode);
  gamma_ = b_->Alloc(gain.shape());
  b_->Fill(1.0f, &gamma_);
  b_->Axpby(1.0f, gamma_, 1.0f, gain, &gamma_);
  beta_ = bias_.Forward(cond, mode);
  Tensor y = b_->Alloc(x.shape());
  b_->ChannelAffine(xhat_, gamma_, beta_, &y);
  return y;
}

Tensor ConditionalBatchNorm::Backward(const Tensor& dy, Tensor* dcond) {
  Tensor dxhat = b_->Alloc(dy.shape());
  Tensor dgamma = b_->Alloc(gamma_.shape());
  Tensor dbeta = b_->Alloc(beta_.shape());
  b_->ChannelAffineBackward(dy, xhat_, gamma_, &dxhat, &dgamma, &dbeta);
  b_->AddTo(gain_.Backward(dgamma), dcond);
  b_->AddTo(bias_.Backward(dbeta), dcond);
  return bn_.NormalizeBackward(dxhat);
}

// ------------------------------------------------------------ Simple layers

Tensor ActivationLayer::Forward(const Tensor& x) {
  x_ = x;
  y_ = b_->Alloc(x.shape());
  b_->ActivationForward(act_, slope_, x, &y_);
  return y_;
}

Tensor ActivationLayer::Backward(const Tensor& dy) {
  Tensor dx = b_->Alloc(dy.shape());
  b_->ActivationBackward(act_, slope_, x_, y_, dy, &dx);
  return dx;
}

Tensor Upsample2x::Forward(const Tensor& x) {
  in_shape_ = x.shape();
  Tensor y = b_->Alloc({x.dim(0), x.dim(1), 2 * x.dim(2), 2 * x.dim(3)});
  b_->Upsample2xForward(x, &y);
  return y;
}

Tensor Upsample2x::Backward(const Tensor& dy) {
  Tensor dx = b_->Alloc(in_shape_);
  b_->Upsample2xBackward(dy, &dx);
  return dx;
}

Tensor AvgPool2x::Forward(const Tensor& x) {
  PG_CHECK(x.dim(2) % 2 == 0 && x.dim(3) % 2 == 0) << "AvgPool2x: odd size";
  in_shape_ = x.shape();
  Tensor y = b_->Alloc({x.dim(0), x.dim(1), x.dim(2) / 2, x.dim(3) / 2});
  b_->AvgPool2xForward(x, &y);
  return y;
}

Tensor AvgPool2x::Backward(const Tensor& dy) {
  Tensor dx = b_->Alloc(in_shape_);
  b_->AvgPool2xBackward(dy, &dx);
  return dx;
}

Tensor MaxPool2x::Forward(const Tensor& x) {
  PG_CHECK(x.dim(2) % 2 == 0 && x.dim(3) % 2 == 0) << "MaxPool2x: odd size";
  x_ = x;
  Tensor y = b_->Alloc({x.dim(0), x.dim(1), x.dim(2) / 2, x.dim(3) / 2});
  b_->MaxPool2xForward(x, &y);
  return y;
}

Tensor MaxPool2x::Backward(const Tensor& dy) {
  Tensor dx = b_->Alloc(x_.shape());
  b_->MaxPool2xBackward(x_, dy, &dx);
  return dx;
}

Tensor SpatialSum::Forward(const Tensor& x) {
  in_shape_ = x.shape();
  Tensor y = b_->Alloc({x.dim(0), x.dim(1)});
  b_->SpatialSumForward(x, &y);
  return y;
}

Tensor SpatialSum::Backward(const Tensor& dy) {
  Tensor dx = b_->Alloc(in_shape_);
  b_->SpatialSumBackward(dy, &dx);
  return dx;
}

// ------------------------------------------------------------------- Embedding

Embedding::Embedding(ParamStore* store, const std::string& name, int vocab,
                     int dim, bool spectral_norm)
    : b_(store->backend()),
      vocab_(vocab),
      dim_(dim),
      weight_(store->AddParam(name + ".weight", {vocab, dim})),
      sn_(store, name, weight_, vocab, spectral_norm) {
  dw_ = b_->Alloc({vocab, dim});
}

Tensor Embedding::Forward(const std::vector<int>& ids, const Mode& mode) {
  for (int id : ids)
    PG_CHECK(id >= 0 && id < vocab_)
        << "embedding id " << id << " of " << vocab_;
  ids_ = ids;
  param_grads_ = mode.param_grads;
  const Tensor& w = sn_.Forward(mode.training && mode.update_sn);
  Tensor y = b_->Alloc({static_cast<int64_t>(ids.size()), dim_});
  b_->GatherRows(w, ids, &y);
  return y;
}

void Embedding::Backward(const Tensor& dy) {
  if (!param_grads_) return;
  b_->Fill(0.0f, &dw_);
  b_->ScatterAddRows(dy, ids_, &dw_);
  sn_.Backward(dw_);
}

// --------------------------------------------------------------- SelfAttention

SelfAttention::SelfAttention(ParamStore* store, const std::string& name,
                             int channels, bool spectral_norm)
    : b_(store->backend()),
      channels_(channels),
      theta_(store, name + ".theta", channels, channels / 8, 1, 1, 0, false,
             spectral_norm),
      phi_(store, name + ".phi", channels, channels / 8, 1, 1, 0, false,
           spectral_norm),
      g_(store, name + ".g", channels, channels / 2, 1, 1, 0, false,
         spectral_norm),
      o_(store, name + ".o", channels / 2, channels, 1, 1, 0, false,
         spectral_norm),
      pool_phi_(b_),
      pool_g_(b_),
      gamma_(store->AddParam(name + ".gamma", {1})) {
  PG_CHECK(channels % 8 == 0) << "SelfAttention needs channels divisible by 8";
}

Tensor SelfAttention::Forward(const Tensor& x, const Mode& mode) {
  x_shape_ = x.shape();
  param_grads_ = mode.param_grads;
  const int n = static_cast<int>(x.dim(0)), h = static_cast<int>(x.dim(2)),
            w = static_cast<int>(x.dim(3));
  const int hw = h * w, hw4 = hw / 4, c8 = channels_ / 8, c2 = channels_ / 2;
  theta_out_ = theta_.Forward(x, mode);
  phi_pooled_ = pool_phi_.Forward(phi_.Forward(x, mode));
  g_pooled_ = pool_g_.Forward(g_.Forward(x, mode));
  Tensor logits = b_->Alloc({n, hw, hw4});
  b_->BatchedGemm(n, true, false, hw, hw4, c8, 1.0f, theta_out_.data(),
                  int64_t{c8} * hw, phi_pooled_.data(), int64_t{c8} * hw4, 0.0f,
                  logits.data(), int64_t{hw} * hw4);
  beta_ = b_->Alloc(logits.shape());
  b_->SoftmaxForward(logits, &beta_);
  attn_out_ = b_->Alloc({n, c2, h, w});
  b_->BatchedGemm(n, false, true, c2, hw, hw4, 1.0f, g_pooled_.data(),
                  int64_t{c2} * hw4, beta_.data(), int64_t{hw} * hw4, 0.0f,
                  attn_out_.data(), int64_t{c2} * hw);
  o_out_ = o_.Forward(attn_out_, mode);
  Tensor y = b_->Clone(x);
  b_->AxpbyScalar(gamma_->value, o_out_, 1.0f, &y);  // x + gamma * o
  return y;
}

Tensor SelfAttention::Backward(const Tensor& dy) {
  const int n = static_cast<int>(x_shape_[0]),
            h = static_cast<int>(x_shape_[2]),
            w = static_cast<int>(x_shape_[3]);
  const int hw = h * w, hw4 = hw / 4, c8 = channels_ / 8, c2 = channels_ / 2;
  if (param_grads_) b_->DotAccumulate(dy, o_out_, &gamma_->grad);
  Tensor do_out = b_->Alloc(dy.shape());
  b_->AxpbyScalar(gamma_->value, dy, 0.0f, &do_out);
  Tensor dattn = o_.Backward(do_out);
  Tensor dg = b_->Alloc(g_pooled_.shape());
  b_->BatchedGemm(n, false, false, c2, hw4, hw, 1.0f, dattn.data(),
                  int64_t{c2} * hw, beta_.data(), int64_t{hw} * hw4, 0.0f,
                  dg.data(), int64_t{c2} * hw4);
  Tensor dbeta = b_->Alloc(beta_.shape());
  b_->BatchedGemm(n, true, false, hw, hw4, c2, 1.0f, dattn.data(),
                  int64_t{c2} * hw, g_pooled_.data(), int64_t{c2} * hw4, 0.0f,
                  dbeta.data(), int64_t{hw} * hw4);
  Tensor dlogits = b_->Alloc(beta_.shape());
  b_->SoftmaxBackward(beta_, dbeta, &dlogits);
  Tensor dtheta = b_->Alloc(theta_out_.shape());
  b_->BatchedGemm(n, false, true, c8, hw, hw4, 1.0f, phi_pooled_.data(),
                  int64_t{c8} * hw4, dlogits.data(), int64_t{hw} * hw4, 0.0f,
                  dtheta.data(), int64_t{c8} * hw);
  Tensor dphi = b_->Alloc(phi_pooled_.shape());
  b_->BatchedGemm(n, false, false, c8, hw4, hw, 1.0f, theta_out_.data(),
                  int64_t{c8} * hw, dlogits.data(), int64_t{hw} * hw4, 0.0f,
                  dphi.data(), int64_t{c8} * hw4);
  Tensor dx = b_->Clone(dy);
  b_->AddTo(theta_.Backward(dtheta), &dx);
  b_->AddTo(phi_.Backward(pool_phi_.Backward(dphi)), &dx);
  b_->AddTo(g_.Backward(pool_g_.Backward(dg)), &dx);
  return dx;
}

// ---------------------------------------------------------------- Initializers

void InitUniformFanIn(Backend* b, Param* p, int64_t fan_in, Rng* rng) {
  Tensor host = Tensor::Host(p->value.shape());
  const float bound = 1.0f / std::sqrt(static_cast<float>(fan_in));
  for (int64_t i = 0; i < host.numel(); ++i)
    host.data()[i] = (2.0f * rng->Uniform() - 1.0f) * bound;
  b->Upload(host.data(), &p->value);
}

void InitOrthogonal(Backend* b, Param* p, Rng* rng) {
  const int64_t rows = p->value.dim(0), cols = p->value.numel() / rows;
  const bool by_rows = rows <= cols;
  const int64_t count = by_rows ? rows : cols, len = by_rows ? cols : rows;
  // Modified Gram-Schmidt on `count` Gaussian vectors of length `len`.
  std::vector<double> q(count * len);
  for (double& x : q) x = rng->Normal();
  for (int64_t i = 0; i < count; ++i) {
    double* vi = &q[i * len];
    for (int64_t j = 0; j < i; ++j) {
      const double* vj = &q[j * len];
      double d = 0;
      for (int64_t k = 0; k < len; ++k) d += vi[k] * vj[k];
      for (int64_t k = 0; k < len; ++k) vi[k] -= d * vj[k];
    }
    double norm = 0;
    for (int64_t k = 0; k < len; ++k) norm += vi[k] * vi[k];
    norm = std::sqrt(std::max(norm, 1e-30));
    for (int64_t k = 0; k < len; ++k) vi[k] /= norm;
  }
  Tensor host = Tensor::Host(p->value.shape());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      host.data()[r * cols + c] =
          static_cast<float>(by_rows ? q[r * len + c] : q[c * len + r]);
  b->Upload(host.data(), &p->value);
}

void InitConstant(Backend* b, Param* p, float value) {
  b->Fill(value, &p->value);
}

}  // namespace paragan

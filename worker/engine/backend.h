#ifndef PARAGAN_WORKER_ENGINE_BACKEND_H_
#define PARAGAN_WORKER_ENGINE_BACKEND_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/tensor.h"

namespace paragan {

// Geometry of a 2-D convolution in canonical layout: x [N, Cin, H, W],
// w [Cout, Cin, KH, KW], y [N, Cout, Ho, Wo]. Square kernels and padding set
// `kernel` and `padding` (the first eight fields, as every square use writes
// them); rectangular ones (InceptionV3's 1x7, 7x1, 1x3, 3x1) also set
// kernel_h / kernel_w (> 0 overrides `kernel` along that axis) and pad_h /
// pad_w (>= 0 overrides `padding`). Use kh(), kw(), ph(), pw(): the effective
// sizes. The stride is the same along both axes. Every pass (forward and both
// backward ones) supports rectangular geometry on every backend.
struct ConvGeometry {
  int n = 0, in_channels = 0, in_h = 0, in_w = 0;
  int out_channels = 0, kernel = 0, stride = 1, padding = 0;
  int kernel_h = 0, kernel_w = 0, pad_h = -1, pad_w = -1;

  // A rectangular geometry (PyTorch's kernel_size=(kh, kw),
  // padding=(ph, pw)).
  static ConvGeometry Rect(int n, int in_channels, int in_h, int in_w,
                           int out_channels, int kh, int kw, int stride, int ph,
                           int pw) {
    ConvGeometry g;
    g.n = n;
    g.in_channels = in_channels;
    g.in_h = in_h;
    g.in_w = in_w;
    g.out_channels = out_channels;
    g.kernel = kh == kw ? kh : 0;
    g.stride = stride;
    g.padding = ph == pw ? ph : 0;
    g.kernel_h = kh;
    g.kernel_w = kw;
    g.pad_h = ph;
    g.pad_w = pw;
    return g;
  }
  int kh() const { return kernel_h > 0 ? kernel_h : kernel; }
  int kw() const { return kernel_w > 0 ? kernel_w : kernel; }
  int ph() const { return pad_h >= 0 ? pad_h : padding; }
  int pw() const { return pad_w >= 0 ? pad_w : padding; }
  bool square() const { return kh() == kw() && ph() == pw(); }
  int out_h() const { return (in_h + 2 * ph() - kh()) / stride + 1; }
  int out_w() const { return (in_w + 2 * pw() - kw()) / stride + 1; }
  // Equal when the effective geometry is (however it was written).
  bool operator==(const ConvGeometry& o) const {
    return n == o.n && in_channels == o.in_channels && in_h == o.in_h &&
           in_w == o.in_w && out_channels == o.out_channels && kh() == o.kh() &&
           kw() == o.kw() && stride == o.stride && ph() == o.ph() &&
           pw() == o.pw();
  }
};

// A 2-D pooling window over [N, C, H, W] (square kernel, stride and
// padding), PyTorch's max_pool2d / avg_pool2d with ceil_mode=False: output
// side floor((H + 2 * padding - kernel) / stride) + 1. Padding must be at
// most kernel / 2 (PyTorch's rule), so every window holds an input element.
enum class PoolMode {
  kMax,         // padded positions never win (as -inf)
  kAvgInclude,  // sum / (kernel * kernel): count_include_pad=True
  kAvgExclude,  // sum / in-bounds elements: count_include_pad=False
};
struct PoolGeometry {
  int n = 0, channels = 0, in_h = 0, in_w = 0;
  int kernel = 0, stride = 1, padding = 0;
  PoolMode mode = PoolMode::kMax;
  int out_h() const { return (in_h + 2 * padding - kernel) / stride + 1; }
  int out_w() const { return (in_w + 2 * padding - kernel) / stride + 1; }
};

enum class Activation { kIdentity, kRelu, kLeakyRelu, kTanh };

// Every tensor operation the layers need, so a layer never touches memory
// directly and the same model code runs on any device. All pointers and
// tensors belong to this backend's device. Outputs are overwritten unless the
// name says Accumulate. Implementations: CpuBackend (oneDNN), and
// the CUDA backend (cuDNN + cuBLAS).
class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;
  virtual std::string name() const = 0;

  // Memory.
  virtual Tensor Alloc(const Shape& shape) = 0;  // uninitialized
  Tensor Zeros(const Shape& shape);
  virtual void Fill(float value, Tensor* t) = 0;
  virtual void Copy(const Tensor& src, Tensor* dst) = 0;
  virtual void Upload(const float* host, Tensor* dst) = 0;
  virtual void Download(const Tensor& src, float* host) = 0;
  Tensor Clone(const Tensor& src);
  // dst += src (same size).
  void AddTo(const Tensor& src, Tensor* dst) {
    Axpby(1.0f, *dst, 1.0f, src, dst);
  }
  Tensor FromHost(const Tensor& host);
  Tensor ToHost(const Tensor& t);
  // Waits for queued work (no-op on CPU).
  virtual void Synchronize() {}

  // Dense algebra on row-major matrices: C = alpha * op(A) op(B) + beta * C,
  // op(A) is [m, k], op(B) is [k, n]. Batched form strides through `batch`
  // independent products.
  virtual void Gemm(bool trans_a, bool trans_b, int m, int n, int k,
                    float alpha, const float* a, const float* b, float beta,
                    float* c) = 0;
  virtual void BatchedGemm(int batch, bool trans_a, bool trans_b, int m, int n,
                           int k, float alpha, const float* a, int64_t stride_a,
                           const float* b, int64_t stride_b, float beta,
                           float* c, int64_t stride_c) = 0;
  virtual float Dot(const Tensor& a, const Tensor& b) = 0;

  // Convolution (cross-correlation, as in PyTorch). Bias may be null.
  virtual void ConvForward(const ConvGeometry& g, const Tensor& x,
                           const Tensor& w, const Tensor* bias, Tensor* y) = 0;
  virtual void ConvBackwardData(const ConvGeometry& g, const Tensor& dy,
                                const Tensor& w, Tensor* dx) = 0;
  // dw and db (if non-null) are overwritten.
  virtual void ConvBackwardWeights(const ConvGeometry& g, const Tensor& x,
                                   const Tensor& dy, Tensor* dw,
                                   Tensor* db) = 0;

  // Batch normalization over (N, H, W) per channel of x [N, C, H, W] (H=W=1
  // for [N, C]). Writes per-channel mean and 1/sqrt(var + eps) (biased var)
  // and the normalized xhat.
  virtual void BatchNormStats(const Tensor& x, float eps, Tensor* mean,
                              Tensor* inv_std, Tensor* xhat) = 0;
  // xhat = (x - mean) * inv_std with given statistics (eval mode).
  virtual void BatchNormApply(const Tensor& x, const Tensor& mean,
                              const Tensor& inv_std, Tensor* xhat) = 0;
  // y = xhat * gamma + beta. gamma/beta are [C] or per sample [N, C].
  virtual void ChannelAffine(const Tensor& xhat, const Tensor& gamma,
                             const Tensor& beta, Tensor* y) = 0;
  // Backward of ChannelAffine: dgamma/dbeta in gamma's shape (overwritten),
  // dxhat = dy * gamma.
  virtual void ChannelAffineBackward(const Tensor& dy, const Tensor& xhat,
                                     const Tensor& gamma, Tensor* dxhat,
                                     Tensor* dgamma, Tensor* dbeta) = 0;
  // Backward of BatchNormStats in training mode (gradient flows through the
  // batch statistics): dx = inv_std * (dxhat - mean(dxhat) - xhat *
  // mean(dxhat * xhat)).
  virtual void BatchNormBackward(const Tensor& dxhat, const Tensor& xhat,
                                 const Tensor& inv_std, Tensor* dx) = 0;
  // running = (1 - momentum) * running + momentum * batch, var unbiased.
  virtual void UpdateRunningStats(const Tensor& batch_mean,
                                  const Tensor& batch_inv_std, float eps,
                                  int64_t count, float momentum,
                                  Tensor* running_mean,
                                  Tensor* running_var) = 0;
  // inv_std = 1 / sqrt(var + eps).
  virtual void InvStd(const Tensor& var, float eps, Tensor* inv_std) = 0;

  // Elementwise.
  virtual void ActivationForward(Activation act, float slope, const Tensor& x,
                                 Tensor* y) = 0;
  // Uses y for tanh and x for relu / leaky relu (both given).
  virtual void ActivationBackward(Activation act, float slope, const Tensor& x,
                                  const Tensor& y, const Tensor& dy,
                                  Tensor* dx) = 0;
  // y = a * alpha + b * beta (shapes equal; y may alias a or b).
  virtual void Axpby(float alpha, const Tensor& a, float beta, const Tensor& b,
                     Tensor* y) = 0;
  virtual void Scale(float alpha, Tensor* x) = 0;
  // y[n, f] += bias[f] for y [N, F].
  virtual void AddRowBias(const Tensor& bias, Tensor* y) = 0;
  // db[f] = sum_n dy[n, f] (overwritten).
  virtual void RowBiasGrad(const Tensor& dy, Tensor* db) = 0;

  // y[n, c, ...] += bias[c] for [N, C, ...]; db[c] = sum over n and space.
  virtual void AddChannelBias(const Tensor& bias, Tensor* y) = 0;
  virtual void ChannelBiasGrad(const Tensor& dy, Tensor* db) = 0;

  // Spatial ops on [N, C, H, W].
  virtual void Upsample2xForward(const Tensor& x, Tensor* y) = 0;
  virtual void Upsample2xBackward(const Tensor& dy, Tensor* dx) = 0;
  virtual void AvgPool2xForward(const Tensor& x, Tensor* y) = 0;
  virtual void AvgPool2xBackward(const Tensor& dy, Tensor* dx) = 0;
  virtual void MaxPool2xForward(const Tensor& x, Tensor* y) = 0;
  virtual void MaxPool2xBackward(const Tensor& x, const Tensor& dy,
                                 Tensor* dx) = 0;
  // [N, C, H, W] -> [N, C] sum over space, and back (broadcast).
  virtual void SpatialSumForward(const Tensor& x, Tensor* y) = 0;
  virtual void SpatialSumBackward(const Tensor& dy, Tensor* dx) = 0;
  // General pooling, forward only (inference): y [N, C, out_h, out_w] of
  // x [N, C, in_h, in_w] as `g` says (shapes checked). Global average
  // pooling is SpatialSumForward then Scale(1 / (H * W)).
  virtual void Pool2dForward(const PoolGeometry& g, const Tensor& x,
                             Tensor* y) = 0;
  // Bilinear resize of x [N, C, H, W] to y's [N, C, Ho, Wo], forward only:
  // PyTorch's F.interpolate(mode='bilinear', align_corners=False,
  // antialias=False) with an output size: source coordinate
  // (dst + 0.5) * in / out - 0.5, clamped below at 0, and the neighbour
  // below / right clamped to the last row / column.
  virtual void ResizeBilinearForward(const Tensor& x, Tensor* y) = 0;

  // Concatenate along dim 1 of [N, C_i, ...] tensors, and the inverse split.
  virtual void ConcatChannels(const std::vector<const Tensor*>& parts,
                              Tensor* y) = 0;
  virtual void SplitChannels(const Tensor& y,
                             const std::vector<Tensor*>& parts) = 0;

  // Softmax over the last dimension of [rows, cols].
  virtual void SoftmaxForward(const Tensor& x, Tensor* y) = 0;
  virtual void SoftmaxBackward(const Tensor& y, const Tensor& dy,
                               Tensor* dx) = 0;

  // Embedding rows: y[i] = table[ids[i]]; dtable[ids[i]] += dy[i].
  virtual void GatherRows(const Tensor& table, const std::vector<int>& ids,
                          Tensor* y) = 0;
  virtual void ScatterAddRows(const Tensor& dy, const std::vector<int>& ids,
                              Tensor* dtable) = 0;
  // out[n] = sum_f a[n, f] * b[n, f], and its backward.
  virtual void RowDot(const Tensor& a, const Tensor& b, Tensor* out) = 0;

  // Scalar-valued steps kept on the device (1-element tensors), so spectral
  // norm and attention never wait for the GPU. The defaults read scalars on
  // the host and suit the CPU backend; device backends override them.
  //
  // v /= max(||v||, 1e-12).
  virtual void NormalizeVector(Tensor* v);
  // sigma[0] = <u, wv>; w_sn = w / sigma[0].
  virtual void SpectralNormWeight(const Tensor& u, const Tensor& wv,
                                  const Tensor& w, Tensor* sigma, Tensor* w_sn);
  // dw = (dw_sn - <dw_sn, w_sn> u v^T) / sigma[0] for w [rows(u), cols(v)].
  virtual void SpectralNormBackward(const Tensor& dw_sn, const Tensor& w_sn,
                                    const Tensor& u, const Tensor& v,
                                    const Tensor& sigma, Tensor* dw);
  // y = alpha[0] * x + beta * y (beta == 0: y is not read).
  virtual void AxpbyScalar(const Tensor& alpha, const Tensor& x, float beta,
                           Tensor* y);
  // out[0] += <a, b>.
  virtual void DotAccumulate(const Tensor& a, const Tensor& b, Tensor* out);

  // Optimizer kernels (also usable by parameter servers on the CPU).
  // PyTorch Adam (no weight decay): step is 1-based.
  virtual void AdamUpdate(float lr, float beta1, float beta2, float eps,
                          int64_t step, const Tensor& grad, Tensor* param,
                          Tensor* m, Tensor* v) = 0;
  // ema = decay * ema + (1 - decay) * param.
  virtual void EmaUpdate(float decay, const Tensor& param, Tensor* ema) = 0;
  // True when every element is finite.
  virtual bool AllFinite(const Tensor& t) = 0;
};

// Shared by the backends: PG_CHECK that x, y and g agree (4-D shapes, window
// fits, padding <= kernel / 2) and that the resize shapes are [N, C, H, W]
// with equal N and C and non-empty sides.
void CheckPool2d(const PoolGeometry& g, const Tensor& x, const Tensor& y);
void CheckResizeBilinear(const Tensor& x, const Tensor& y);

// One output row (or column) of a bilinear resize: y = w0 * x[i0] + w1 *
// x[i1], computed as PyTorch does in float (see ResizeBilinearForward).
struct BilinearTap {
  int i0 = 0, i1 = 0;
  float w0 = 1, w1 = 0;
};
std::vector<BilinearTap> BilinearTaps(int in_size, int out_size);

// How the CPU backend lays out convolution operands internally. Tensors at
// the backend boundary are always canonical (NCHW / OIHW).
enum class CpuConvLayout {
  kCanonical,  // oneDNN runs directly on NCHW / OIHW
  kBlocked,    // oneDNN's preferred blocked formats, reordered at the edges
  kAuto,       // per shape and pass, whichever of the two measured faster
};
absl::StatusOr<CpuConvLayout> ParseCpuConvLayout(const std::string& name);

// The CPU backend. threads <= 0 means all cores. With kAuto, the first use
// of each convolution shape times both layouts (a few passes each) and, with
// log_autotune, prints the choice and the timings to stderr.
std::unique_ptr<Backend> MakeCpuBackend(
    int threads, CpuConvLayout layout = CpuConvLayout::kBlocked,
    bool log_autotune = false);

// How the CUDA backend lays out convolution operands internally (tensors at
// the backend boundary stay canonical NCHW / OIHW float32).
enum class GpuConvLayout {
  kNchw,  // cuDNN on the canonical layout
  kNhwc,  // channels-last, channels padded to multiples of 8 (tensor cores)
  kAuto,  // per shape and pass, the faster of the two (measured at first use)
};
// Arithmetic of the CUDA backend's convolutions and matrix products. Master
// weights, activations between layers and gradients stay float32.
enum class GpuPrecision {
  kFp32,  // strict float32 (no tensor cores): the canonical baseline
  kTf32,  // TF32 tensor cores (float32 storage, 10-bit mantissa products)
  kBf16,  // bfloat16 convolution operands, float32 accumulation
  kAuto,  // per shape and pass, the fastest of fp32, tf32 and bf16
};
absl::StatusOr<GpuConvLayout> ParseGpuConvLayout(const std::string& name);
absl::StatusOr<GpuPrecision> ParseGpuPrecision(const std::string& name);
std::string GpuConvLayoutName(GpuConvLayout layout);
std::string GpuPrecisionName(GpuPrecision precision);

struct BackendOptions {
  int threads = 0;  // CPU threads; <= 0: all cores
  CpuConvLayout cpu_layout = CpuConvLayout::kAuto;
  GpuConvLayout gpu_layout = GpuConvLayout::kAuto;
  GpuPrecision gpu_precision = GpuPrecision::kTf32;
  int gpu_device = 0;
  bool log_autotune = false;  // print each autotune decision to stderr
};

// Known names: "cpu", and "cuda" when built with --config=cuda. "cuda" fails
// with FAILED_PRECONDITION when the binary has no CUDA backend or the machine
// has no usable GPU.
absl::StatusOr<std::unique_ptr<Backend>> MakeBackend(
    const std::string& name, const BackendOptions& options);
absl::StatusOr<std::unique_ptr<Backend>> MakeBackend(
    const std::string& name, int threads,
    CpuConvLayout cpu_layout = CpuConvLayout::kBlocked,
    bool log_autotune = false);
// True when this binary was built with the CUDA backend.
bool HasCudaBackend();

}  // namespace paragan

#endif  // PARAGAN_WORKER_ENGINE_BACKEND_H_

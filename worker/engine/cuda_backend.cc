// The CUDA backend: cuDNN convolutions, cuBLAS matrix products, our own
// kernels (cuda_kernels.cu) for everything else, a caching device allocator,
// pinned staging for uploads, and all work queued on one stream so the host
// runs ahead of the GPU until something needs a value back.
//
// Hardware-aware layout: tensors at the Backend boundary are canonical
// NCHW / OIHW float32. Each convolution shape and pass picks, by timing at
// first use, among cuDNN on the canonical layout and channels-last operands
// with channels padded to tensor-core multiples, in the allowed precisions
// (strict fp32, TF32, bf16 operands with fp32 accumulation). Conversions
// happen at the edges of the convolution, like the CPU backend's reorders.

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/check.h"
#include "worker/engine/backend.h"
#include "worker/engine/cuda_kernels.h"

namespace paragan {
namespace {

#define PG_CUDA_CHECK(expr)                             \
  do {                                                  \
    const cudaError_t pg_err = (expr);                  \
    PG_CHECK(pg_err == cudaSuccess)                     \
        << #expr << ": " << cudaGetErrorString(pg_err); \
  } while (0)
#define PG_CUDNN_CHECK(expr)                            \
  do {                                                  \
    const cudnnStatus_t pg_st = (expr);                 \
    PG_CHECK(pg_st == CUDNN_STATUS_SUCCESS)             \
        << #expr << ": " << cudnnGetErrorString(pg_st); \
  } while (0)
#define PG_CUBLAS_CHECK(expr)                                      \
  do {                                                             \
    const cublasStatus_t pg_st = (expr);                           \
    PG_CHECK(pg_st == CUBLAS_STATUS_SUCCESS)                       \
        << #expr << ": cublas status " << static_cast<int>(pg_st); \
  } while (0)

// Catches launch errors (bad configuration) where they happen.
void CheckLaunch(const char* what) {
  const cudaError_t err = cudaGetLastError();
  PG_CHECK(err == cudaSuccess) << what << ": " << cudaGetErrorString(err);
}

int64_t InnerSize(const Tensor& t) {
  int64_t s = 1;
  for (int i = 2; i < t.ndim(); ++i) s *= t.dim(i);
  return s;
}

void CheckSameSize(const Tensor& a, const Tensor& b, const char* what) {
  PG_CHECK_EQ(a.numel(), b.numel()) << what;
}

int64_t RoundUp(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Device blocks cached by rounded size. Every kernel runs on one stream, so
// a block whose last use has been queued may be handed out again for work
// queued after it: stream order makes the reuse safe without events.
class DevicePool {
 public:
  ~DevicePool() { ReleaseCached(); }

  void* Get(size_t bytes) {
    bytes = Round(bytes);
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = free_.find(bytes);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        cached_bytes_ -= bytes;
        return p;
      }
    }
    void* p = nullptr;
    cudaError_t err = cudaMalloc(&p, bytes);
    if (err == cudaErrorMemoryAllocation) {
      cudaGetLastError();  // clear, give the cache back, try once more
      ReleaseCached();
      err = cudaMalloc(&p, bytes);
    }
    PG_CHECK(err == cudaSuccess)
        << "cudaMalloc of " << bytes << " bytes: " << cudaGetErrorString(err);
    return p;
  }

  void Put(void* p, size_t bytes) {
    bytes = Round(bytes);
    std::lock_guard<std::mutex> lock(mu_);
    free_[bytes].push_back(p);
    cached_bytes_ += bytes;
  }

 private:
  static size_t Round(size_t bytes) {
    if (bytes == 0) bytes = 1;
    const size_t unit = bytes < (size_t{1} << 20) ? 512 : (size_t{1} << 20);
    return (bytes + unit - 1) / unit * unit;
  }

  void ReleaseCached() {
    std::lock_guard<std::mutex> lock(mu_);
    cudaDeviceSynchronize();
    for (auto& [size, blocks] : free_)
      for (void* p : blocks) cudaFree(p);
    free_.clear();
    cached_bytes_ = 0;
  }

  std::mutex mu_;
  std::unordered_map<size_t, std::vector<void*>> free_;
  size_t cached_bytes_ = 0;
};

enum class ConvPass { kForward, kBackwardData, kBackwardWeights };
enum class ConvMath { kFp32, kTf32, kBf16 };

const char* PassName(ConvPass p) {
  switch (p) {
    case ConvPass::kForward:
      return "fwd";
    case ConvPass::kBackwardData:
      return "bwd-data";
    case ConvPass::kBackwardWeights:
      return "bwd-weights";
  }
  return "?";
}

const char* MathName(ConvMath m) {
  switch (m) {
    case ConvMath::kFp32:
      return "fp32";
    case ConvMath::kTf32:
      return "tf32";
    case ConvMath::kBf16:
      return "bf16";
  }
  return "?";
}

struct ConvVariant {
  bool channels_last = false;
  ConvMath math = ConvMath::kFp32;
  std::string Name() const {
    return absl::StrCat(channels_last ? "NHWC" : "NCHW", " ", MathName(math));
  }
};

// cuDNN descriptors and the chosen algorithm of one (shape, pass, variant).
struct ConvPlan {
  ConvVariant variant;
  bool ok = false;
  int cin = 0, cout = 0;  // padded channel counts
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  int algo = 0;
  size_t workspace = 0;
  // cuDNN's heuristic ranking (best first): algorithm, workspace, math.
  struct Algo {
    int algo;
    size_t workspace;
    cudnnMathType_t math;
  };
  std::vector<Algo> ranked;

  void Use(const Algo& a) {
    algo = a.algo;
    workspace = a.workspace;
    cudnnSetConvolutionMathType(conv, a.math);
  }

  ConvPlan() = default;
  ConvPlan(const ConvPlan&) = delete;
  ConvPlan& operator=(const ConvPlan&) = delete;
  ~ConvPlan() {
    if (x) cudnnDestroyTensorDescriptor(x);
    if (y) cudnnDestroyTensorDescriptor(y);
    if (w) cudnnDestroyFilterDescriptor(w);
    if (conv) cudnnDestroyConvolutionDescriptor(conv);
  }
};

using ConvKey =
    std::tuple<int, int, int, int, int, int, int, int, int, int, int>;
ConvKey KeyOf(const ConvGeometry& g, ConvPass pass) {
  return {g.n,    g.in_channels, g.in_h, g.in_w, g.out_channels,        g.kh(),
          g.kw(), g.stride,      g.ph(), g.pw(), static_cast<int>(pass)};
}

std::string GeometryName(const ConvGeometry& g) {
  if (g.square())
    return absl::StrFormat("n%d %d->%d k%d s%d p%d %dx%d", g.n, g.in_channels,
                           g.out_channels, g.kh(), g.stride, g.ph(), g.in_h,
                           g.in_w);
  return absl::StrFormat("n%d %d->%d k%dx%d s%d p%dx%d %dx%d", g.n,
                         g.in_channels, g.out_channels, g.kh(), g.kw(),
                         g.stride, g.ph(), g.pw(), g.in_h, g.in_w);
}

class CudaBackend : public Backend {
 public:
  static absl::StatusOr<std::unique_ptr<Backend>> Create(
      const BackendOptions& options) {
    int count = 0;
    const cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess || count == 0) {
      cudaGetLastError();
      return absl::FailedPreconditionError(absl::StrCat(
          "device 'cuda' requested but no usable GPU was found (",
          err == cudaSuccess ? "0 devices" : cudaGetErrorString(err), ")"));
    }
    if (options.gpu_precision == GpuPrecision::kBf16 &&
        options.gpu_layout == GpuConvLayout::kNchw)
      return absl::InvalidArgumentError(
          "bf16 convolutions run channels-last: use --gpu_layout=nhwc or auto "
          "with --gpu_precision=bf16");
    if (options.gpu_device < 0 || options.gpu_device >= count)
      return absl::InvalidArgumentError(absl::StrCat("GPU ", options.gpu_device,
                                                     " requested but only ",
                                                     count, " present"));
    return std::unique_ptr<Backend>(new CudaBackend(options));
  }

  ~CudaBackend() override {
    cudaStreamSynchronize(stream_);
    choice_.clear();
    for (Staging& s : staging_) {
      cudaEventDestroy(s.done);
      cudaFreeHost(s.host);
    }
    cudaFreeHost(host_scalar_);
    cublasDestroy(cublas_);
    cudnnDestroy(cudnn_);
    cudaStreamDestroy(stream_);
  }

  Device device() const override { return Device::kCuda; }
  std::string name() const override {
    return absl::StrCat("cuda (", device_name_, ", layout ",
                        GpuConvLayoutName(options_.gpu_layout), ", precision ",
                        GpuPrecisionName(options_.gpu_precision), ")");
  }

  Tensor Alloc(const Shape& shape) override {
    const int64_t n = NumElements(shape);
    const size_t bytes = std::max<int64_t>(n, 1) * sizeof(float);
    std::shared_ptr<DevicePool> pool = pool_;
    float* p = static_cast<float*>(pool->Get(bytes));
    return Tensor(shape,
                  std::shared_ptr<float>(
                      p, [pool, bytes](float* q) { pool->Put(q, bytes); }),
                  Device::kCuda);
  }
  void Fill(float value, Tensor* t) override {
    cuda::Fill(stream_, t->numel(), value, t->data());
    CheckLaunch("Fill");
  }
  void Copy(const Tensor& src, Tensor* dst) override {
    CheckSameSize(src, *dst, "Copy");
    PG_CUDA_CHECK(cudaMemcpyAsync(dst->data(), src.data(),
                                  src.numel() * sizeof(float),
                                  cudaMemcpyDeviceToDevice, stream_));
  }
  void Upload(const float* host, Tensor* dst) override {
    UploadBytes(host, dst->numel() * sizeof(float), dst->data());
  }
  void Download(const Tensor& src, float* host) override {
    PG_CUDA_CHECK(cudaMemcpyAsync(host, src.data(), src.numel() * sizeof(float),
                                  cudaMemcpyDeviceToHost, stream_));
    PG_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  void Synchronize() override { PG_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

  // Row-major C[m, n] = op(A) op(B) is column-major C^T = op(B)^T op(A)^T.
  void Gemm(bool ta, bool tb, int m, int n, int k, float alpha, const float* a,
            const float* b, float beta, float* c) override {
    if (m == 0 || n == 0) return;
    if (k == 0) {
      if (beta == 0.0f) {
        cuda::Fill(stream_, int64_t{m} * n, 0.0f, c);
      } else {
        cuda::Scale(stream_, int64_t{m} * n, beta, c);
      }
      CheckLaunch("Gemm k=0");
      return;
    }
    const int lda = ta ? m : k, ldb = tb ? k : n;
    PG_CUBLAS_CHECK(cublasGemmEx(
        cublas_, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
        n, m, k, &alpha, b, CUDA_R_32F, ldb, a, CUDA_R_32F, lda, &beta, c,
        CUDA_R_32F, n, gemm_compute_, CUBLAS_GEMM_DEFAULT));
  }
  void BatchedGemm(int batch, bool ta, bool tb, int m, int n, int k,
                   float alpha, const float* a, int64_t sa, const float* b,
                   int64_t sb, float beta, float* c, int64_t sc) override {
    if (batch == 0 || m == 0 || n == 0) return;
    const int lda = ta ? m : k, ldb = tb ? k : n;
    PG_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        cublas_, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
        n, m, k, &alpha, b, CUDA_R_32F, ldb, sb, a, CUDA_R_32F, lda, sa, &beta,
        c, CUDA_R_32F, n, sc, batch, gemm_compute_, CUBLAS_GEMM_DEFAULT));
  }
  float Dot(const Tensor& a, const Tensor& b) override {
    CheckSameSize(a, b, "Dot");
    double* d = static_cast<double*>(scratch_scalar_.get());
    cuda::Dot(stream_, a.numel(), a.data(), b.data(), d);
    CheckLaunch("Dot");
    PG_CUDA_CHECK(cudaMemcpyAsync(host_scalar_, d, sizeof(double),
                                  cudaMemcpyDeviceToHost, stream_));
    PG_CUDA_CHECK(cudaStreamSynchronize(stream_));
    return static_cast<float>(*static_cast<double*>(host_scalar_));
  }

  void NormalizeVector(Tensor* v) override {
    std::shared_ptr<void> d = DeviceDot(*v, *v);
    cuda::ScaleByInverseNorm(stream_, v->numel(), static_cast<double*>(d.get()),
                             v->data());
    CheckLaunch("NormalizeVector");
  }
  void SpectralNormWeight(const Tensor& u, const Tensor& wv, const Tensor& w,
                          Tensor* sigma, Tensor* w_sn) override {
    std::shared_ptr<void> d = DeviceDot(u, wv);
    cuda::SpectralNormWeight(stream_, w.numel(), static_cast<double*>(d.get()),
                             w.data(), sigma->data(), w_sn->data());
    CheckLaunch("SpectralNormWeight");
  }
  void SpectralNormBackward(const Tensor& dw_sn, const Tensor& w_sn,
                            const Tensor& u, const Tensor& v,
                            const Tensor& sigma, Tensor* dw) override {
    std::shared_ptr<void> d = DeviceDot(dw_sn, w_sn);
    cuda::SpectralNormBackward(stream_, u.numel(), v.numel(),
                               static_cast<double*>(d.get()), sigma.data(),
                               dw_sn.data(), u.data(), v.data(), dw->data());
    CheckLaunch("SpectralNormBackward");
  }
  void AxpbyScalar(const Tensor& alpha, const Tensor& x, float beta,
                   Tensor* y) override {
    CheckSameSize(x, *y, "AxpbyScalar");
    cuda::AxpbyScalar(stream_, x.numel(), alpha.data(), x.data(), beta,
                      y->data());
    CheckLaunch("AxpbyScalar");
  }
  void DotAccumulate(const Tensor& a, const Tensor& b, Tensor* out) override {
    std::shared_ptr<void> d = DeviceDot(a, b);
    cuda::AddDot(stream_, static_cast<double*>(d.get()), out->data());
    CheckLaunch("DotAccumulate");
  }

  void ConvForward(const ConvGeometry& g, const Tensor& x, const Tensor& w,
                   const Tensor* bias, Tensor* y) override {
    RunConv(g, ConvPass::kForward, x.data(), w.data(), y->data());
    if (bias != nullptr) {
      cuda::AddChannelBias(stream_, g.n, g.out_channels,
                           int64_t{g.out_h()} * g.out_w(), bias->data(),
                           y->data());
      CheckLaunch("conv bias");
    }
  }
  void ConvBackwardData(const ConvGeometry& g, const Tensor& dy,
                        const Tensor& w, Tensor* dx) override {
    RunConv(g, ConvPass::kBackwardData, dy.data(), w.data(), dx->data());
  }
  void ConvBackwardWeights(const ConvGeometry& g, const Tensor& x,
                           const Tensor& dy, Tensor* dw, Tensor* db) override {
    RunConv(g, ConvPass::kBackwardWeights, x.data(), dy.data(), dw->data());
    if (db != nullptr) {
      cuda::ChannelBiasGrad(stream_, g.n, g.out_channels,
                            int64_t{g.out_h()} * g.out_w(), dy.data(),
                            db->data());
      CheckLaunch("conv bias grad");
    }
  }

  void BatchNormStats(const Tensor& x, float eps, Tensor* mean, Tensor* inv_std,
                      Tensor* xhat) override {
    cuda::BatchNormStats(stream_, x.dim(0), x.dim(1), InnerSize(x), x.data(),
                         eps, mean->data(), inv_std->data(), xhat->data());
    CheckLaunch("BatchNormStats");
  }
  void BatchNormApply(const Tensor& x, const Tensor& mean,
                      const Tensor& inv_std, Tensor* xhat) override {
    cuda::BatchNormApply(stream_, x.dim(0), x.dim(1), InnerSize(x), x.data(),
                         mean.data(), inv_std.data(), xhat->data());
    CheckLaunch("BatchNormApply");
  }
  void ChannelAffine(const Tensor& xhat, const Tensor& gamma,
                     const Tensor& beta, Tensor* y) override {
    const int64_t n = xhat.dim(0), c = xhat.dim(1);
    const bool per_sample = gamma.numel() == n * c && gamma.ndim() == 2;
    cuda::ChannelAffine(stream_, n, c, InnerSize(xhat), per_sample, xhat.data(),
                        gamma.data(), beta.data(), y->data());
    CheckLaunch("ChannelAffine");
  }
  void ChannelAffineBackward(const Tensor& dy, const Tensor& xhat,
                             const Tensor& gamma, Tensor* dxhat, Tensor* dgamma,
                             Tensor* dbeta) override {
    const int64_t n = xhat.dim(0), c = xhat.dim(1);
    const bool per_sample = gamma.numel() == n * c && gamma.ndim() == 2;
    cuda::ChannelAffineBackward(stream_, n, c, InnerSize(xhat), per_sample,
                                dy.data(), xhat.data(), gamma.data(),
                                dxhat->data(), dgamma->data(), dbeta->data());
    CheckLaunch("ChannelAffineBackward");
  }
  void BatchNormBackward(const Tensor& dxhat, const Tensor& xhat,
                         const Tensor& inv_std, Tensor* dx) override {
    cuda::BatchNormBackward(stream_, xhat.dim(0), xhat.dim(1), InnerSize(xhat),
                            dxhat.data(), xhat.data(), inv_std.data(),
                            dx->data());
    CheckLaunch("BatchNormBackward");
  }
  void UpdateRunningStats(const Tensor& batch_mean, const Tensor& batch_inv_std,
                          float eps, int64_t count, float momentum,
                          Tensor* running_mean, Tensor* running_var) override {
    cuda::UpdateRunningStats(stream_, batch_mean.numel(), batch_mean.data(),
                             batch_inv_std.data(), eps, count, momentum,
                             running_mean->data(), running_var->data());
    CheckLaunch("UpdateRunningStats");
  }
  void InvStd(const Tensor& var, float eps, Tensor* inv_std) override {
    cuda::InvStd(stream_, var.numel(), var.data(), eps, inv_std->data());
    CheckLaunch("InvStd");
  }

  void ActivationForward(Activation act, float slope, const Tensor& x,
                         Tensor* y) override {
    CheckSameSize(x, *y, "ActivationForward");
    cuda::ActivationForward(stream_, static_cast<int>(act), slope, x.numel(),
                            x.data(), y->data());
    CheckLaunch("ActivationForward");
  }
  void ActivationBackward(Activation act, float slope, const Tensor& x,
                          const Tensor& y, const Tensor& dy,
                          Tensor* dx) override {
    cuda::ActivationBackward(stream_, static_cast<int>(act), slope, dy.numel(),
                             x.data(), y.data(), dy.data(), dx->data());
    CheckLaunch("ActivationBackward");
  }
  void Axpby(float alpha, const Tensor& a, float beta, const Tensor& b,
             Tensor* y) override {
    CheckSameSize(a, b, "Axpby");
    CheckSameSize(a, *y, "Axpby");
    cuda::Axpby(stream_, a.numel(), alpha, a.data(), beta, b.data(), y->data());
    CheckLaunch("Axpby");
  }
  void Scale(float alpha, Tensor* x) override {
    cuda::Scale(stream_, x->numel(), alpha, x->data());
    CheckLaunch("Scale");
  }
  void AddRowBias(const Tensor& bias, Tensor* y) override {
    const int64_t f = bias.numel();
    cuda::AddRowBias(stream_, y->numel() / f, f, bias.data(), y->data());
    CheckLaunch("AddRowBias");
  }
  void RowBiasGrad(const Tensor& dy, Tensor* db) override {
    const int64_t f = db->numel();
    cuda::RowBiasGrad(stream_, dy.numel() / f, f, dy.data(), db->data());
    CheckLaunch("RowBiasGrad");
  }
  void AddChannelBias(const Tensor& bias, Tensor* y) override {
    cuda::AddChannelBias(stream_, y->dim(0), y->dim(1), InnerSize(*y),
                         bias.data(), y->data());
    CheckLaunch("AddChannelBias");
  }
  void ChannelBiasGrad(const Tensor& dy, Tensor* db) override {
    cuda::ChannelBiasGrad(stream_, dy.dim(0), dy.dim(1), InnerSize(dy),
                          dy.data(), db->data());
    CheckLaunch("ChannelBiasGrad");
  }

  void Upsample2xForward(const Tensor& x, Tensor* y) override {
    cuda::Upsample2xForward(stream_, x.dim(0) * x.dim(1), x.dim(2), x.dim(3),
                            x.data(), y->data());
    CheckLaunch("Upsample2xForward");
  }
  void Upsample2xBackward(const Tensor& dy, Tensor* dx) override {
    cuda::Upsample2xBackward(stream_, dx->dim(0) * dx->dim(1), dx->dim(2),
                             dx->dim(3), dy.data(), dx->data());
    CheckLaunch("Upsample2xBackward");
  }
  void AvgPool2xForward(const Tensor& x, Tensor* y) override {
    cuda::AvgPool2xForward(stream_, y->dim(0) * y->dim(1), y->dim(2), y->dim(3),
                           x.data(), y->data());
    CheckLaunch("AvgPool2xForward");
  }
  void AvgPool2xBackward(const Tensor& dy, Tensor* dx) override {
    cuda::AvgPool2xBackward(stream_, dy.dim(0) * dy.dim(1), dy.dim(2),
                            dy.dim(3), dy.data(), dx->data());
    CheckLaunch("AvgPool2xBackward");
  }
  void MaxPool2xForward(const Tensor& x, Tensor* y) override {
    cuda::MaxPool2xForward(stream_, y->dim(0) * y->dim(1), y->dim(2), y->dim(3),
                           x.data(), y->data());
    CheckLaunch("MaxPool2xForward");
  }
  void MaxPool2xBackward(const Tensor& x, const Tensor& dy,
                         Tensor* dx) override {
    cuda::MaxPool2xBackward(stream_, dy.dim(0) * dy.dim(1), dy.dim(2),
                            dy.dim(3), x.data(), dy.data(), dx->data());
    CheckLaunch("MaxPool2xBackward");
  }
  void SpatialSumForward(const Tensor& x, Tensor* y) override {
    cuda::SpatialSumForward(stream_, x.dim(0) * x.dim(1), InnerSize(x),
                            x.data(), y->data());
    CheckLaunch("SpatialSumForward");
  }
  void SpatialSumBackward(const Tensor& dy, Tensor* dx) override {
    cuda::SpatialSumBackward(stream_, dx->dim(0) * dx->dim(1), InnerSize(*dx),
                             dy.data(), dx->data());
    CheckLaunch("SpatialSumBackward");
  }

  void Pool2dForward(const PoolGeometry& g, const Tensor& x,
                     Tensor* y) override {
    CheckPool2d(g, x, *y);
    cuda::Pool2dForward(stream_, int64_t{g.n} * g.channels, g.in_h, g.in_w,
                        g.out_h(), g.out_w(), g.kernel, g.stride, g.padding,
                        static_cast<int>(g.mode), x.data(), y->data());
    CheckLaunch("Pool2dForward");
  }
  void ResizeBilinearForward(const Tensor& x, Tensor* y) override {
    CheckResizeBilinear(x, *y);
    cuda::ResizeBilinearForward(stream_, x.dim(0) * x.dim(1), x.dim(2),
                                x.dim(3), y->dim(2), y->dim(3), x.data(),
                                y->data());
    CheckLaunch("ResizeBilinearForward");
  }

  void ConcatChannels(const std::vector<const Tensor*>& parts,
                      Tensor* y) override {
    const int64_t n = y->dim(0), row = y->numel() / n;
    int64_t offset = 0;
    for (const Tensor* t : parts) {
      const int64_t len = t->numel() / n;
      PG_CUDA_CHECK(cudaMemcpy2DAsync(y->data() + offset, row * sizeof(float),
                                      t->data(), len * sizeof(float),
                                      len * sizeof(float), n,
                                      cudaMemcpyDeviceToDevice, stream_));
      offset += len;
    }
    PG_CHECK_EQ(offset, row);
  }
  void SplitChannels(const Tensor& y,
                     const std::vector<Tensor*>& parts) override {
    const int64_t n = y.dim(0), row = y.numel() / n;
    int64_t offset = 0;
    for (Tensor* t : parts) {
      const int64_t len = t->numel() / n;
      PG_CUDA_CHECK(cudaMemcpy2DAsync(t->data(), len * sizeof(float),
                                      y.data() + offset, row * sizeof(float),
                                      len * sizeof(float), n,
                                      cudaMemcpyDeviceToDevice, stream_));
      offset += len;
    }
    PG_CHECK_EQ(offset, row);
  }

  void SoftmaxForward(const Tensor& x, Tensor* y) override {
    const int64_t cols = x.dim(x.ndim() - 1);
    cuda::SoftmaxForward(stream_, x.numel() / cols, cols, x.data(), y->data());
    CheckLaunch("SoftmaxForward");
  }
  void SoftmaxBackward(const Tensor& y, const Tensor& dy, Tensor* dx) override {
    const int64_t cols = y.dim(y.ndim() - 1);
    cuda::SoftmaxBackward(stream_, y.numel() / cols, cols, y.data(), dy.data(),
                          dx->data());
    CheckLaunch("SoftmaxBackward");
  }

  void GatherRows(const Tensor& table, const std::vector<int>& ids,
                  Tensor* y) override {
    for (int id : ids)
      PG_CHECK(id >= 0 && id < table.dim(0)) << "row id " << id;
    Tensor dev_ids = UploadIds(ids);
    cuda::GatherRows(stream_, ids.size(), table.dim(1), table.data(),
                     reinterpret_cast<const int*>(dev_ids.data()), y->data());
    CheckLaunch("GatherRows");
  }
  void ScatterAddRows(const Tensor& dy, const std::vector<int>& ids,
                      Tensor* dtable) override {
    for (int id : ids)
      PG_CHECK(id >= 0 && id < dtable->dim(0)) << "row id " << id;
    Tensor dev_ids = UploadIds(ids);
    cuda::ScatterAddRows(stream_, ids.size(), dtable->dim(1), dy.data(),
                         reinterpret_cast<const int*>(dev_ids.data()),
                         dtable->data());
    CheckLaunch("ScatterAddRows");
  }
  void RowDot(const Tensor& a, const Tensor& b, Tensor* out) override {
    const int64_t n = a.dim(0);
    cuda::RowDot(stream_, n, a.numel() / n, a.data(), b.data(), out->data());
    CheckLaunch("RowDot");
  }

  void AdamUpdate(float lr, float beta1, float beta2, float eps, int64_t step,
                  const Tensor& grad, Tensor* param, Tensor* m,
                  Tensor* v) override {
    const double bc1 = 1 - std::pow(double{beta1}, double(step));
    const double bc2 = 1 - std::pow(double{beta2}, double(step));
    cuda::Adam(stream_, grad.numel(), static_cast<float>(lr / bc1),
               static_cast<float>(std::sqrt(bc2)), beta1, beta2, eps,
               grad.data(), param->data(), m->data(), v->data());
    CheckLaunch("Adam");
  }
  void EmaUpdate(float decay, const Tensor& param, Tensor* ema) override {
    cuda::Ema(stream_, param.numel(), decay, param.data(), ema->data());
    CheckLaunch("Ema");
  }
  bool AllFinite(const Tensor& t) override {
    int* flag = static_cast<int*>(scratch_scalar_.get());
    cuda::AnyNonFinite(stream_, t.numel(), t.data(), flag);
    CheckLaunch("AllFinite");
    PG_CUDA_CHECK(cudaMemcpyAsync(host_scalar_, flag, sizeof(int),
                                  cudaMemcpyDeviceToHost, stream_));
    PG_CUDA_CHECK(cudaStreamSynchronize(stream_));
    return *static_cast<int*>(host_scalar_) == 0;
  }

 private:
  explicit CudaBackend(const BackendOptions& options)
      : options_(options), pool_(std::make_shared<DevicePool>()) {
    PG_CUDA_CHECK(cudaSetDevice(options.gpu_device));
    cudaDeviceProp prop;
    PG_CUDA_CHECK(cudaGetDeviceProperties(&prop, options.gpu_device));
    device_name_ = prop.name;
    tensor_cores_ = prop.major >= 8;  // TF32 / bf16 need Ampere or newer
    PG_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    PG_CUDNN_CHECK(cudnnCreate(&cudnn_));
    PG_CUDNN_CHECK(cudnnSetStream(cudnn_, stream_));
    PG_CUBLAS_CHECK(cublasCreate(&cublas_));
    PG_CUBLAS_CHECK(cublasSetStream(cublas_, stream_));
    PG_CUDA_CHECK(cudaMallocHost(&host_scalar_, sizeof(double)));
    void* scalar = pool_->Get(sizeof(double));
    std::shared_ptr<DevicePool> pool = pool_;
    scratch_scalar_ = std::shared_ptr<void>(
        scalar, [pool](void* p) { pool->Put(p, sizeof(double)); });
    // Matrix products follow the precision: strict fp32 only for kFp32
    // (products here are small: linear layers, attention maps).
    gemm_compute_ =
        options.gpu_precision == GpuPrecision::kFp32 || !tensor_cores_
            ? CUBLAS_COMPUTE_32F
            : CUBLAS_COMPUTE_32F_FAST_TF32;
    for (bool channels_last : {false, true}) {
      if (options.gpu_layout == GpuConvLayout::kNchw && channels_last) continue;
      if (options.gpu_layout == GpuConvLayout::kNhwc && !channels_last)
        continue;
      for (ConvMath math :
           {ConvMath::kFp32, ConvMath::kTf32, ConvMath::kBf16}) {
        if (!AllowedMath(math)) continue;
        // bf16 operands are always converted, so always channels-last.
        if (math == ConvMath::kBf16 && !channels_last) continue;
        // With every precision allowed, strict fp32 only wins on shapes too
        // small for tensor cores, where the canonical layout is as good.
        if (options.gpu_precision == GpuPrecision::kAuto &&
            math == ConvMath::kFp32 && channels_last)
          continue;
        candidates_.push_back({channels_last, math});
      }
    }
    if (candidates_.empty()) {
      // Pre-Ampere GPU: no TF32 / bf16 tensor cores, fall back to fp32.
      candidates_.push_back(
          {options.gpu_layout == GpuConvLayout::kNhwc, ConvMath::kFp32});
    }
    if (options.log_autotune) {
      std::vector<std::string> names;
      for (const ConvVariant& v : candidates_) names.push_back(v.Name());
      std::fprintf(stderr,
                   "cuda backend: %s, convolution variants: %s; matrix "
                   "products: %s\n",
                   device_name_.c_str(), absl::StrJoin(names, ", ").c_str(),
                   gemm_compute_ == CUBLAS_COMPUTE_32F ? "fp32" : "tf32");
    }
  }

  bool AllowedMath(ConvMath math) const {
    if (math != ConvMath::kFp32 && !tensor_cores_) return false;
    switch (options_.gpu_precision) {
      case GpuPrecision::kFp32:
        return math == ConvMath::kFp32;
      case GpuPrecision::kTf32:
        return math == ConvMath::kTf32;
      case GpuPrecision::kBf16:
        return math == ConvMath::kBf16;
      case GpuPrecision::kAuto:
        return true;
    }
    return false;
  }

  struct Staging {
    void* host = nullptr;
    size_t bytes = 0;
    cudaEvent_t done = nullptr;
  };

  // Copies host memory into a pinned buffer and queues the transfer, so the
  // caller returns at once and the copy overlaps queued kernels.
  void UploadBytes(const void* src, size_t bytes, void* dst) {
    if (bytes == 0) return;
    Staging* slot = nullptr;
    for (Staging& s : staging_) {
      if (s.bytes >= bytes && cudaEventQuery(s.done) == cudaSuccess) {
        slot = &s;
        break;
      }
    }
    if (slot == nullptr) {
      Staging s;
      s.bytes = std::max<size_t>(bytes, 1 << 16);
      PG_CUDA_CHECK(cudaMallocHost(&s.host, s.bytes));
      PG_CUDA_CHECK(cudaEventCreateWithFlags(&s.done, cudaEventDisableTiming));
      staging_.push_back(s);
      slot = &staging_.back();
    }
    std::memcpy(slot->host, src, bytes);
    PG_CUDA_CHECK(cudaMemcpyAsync(dst, slot->host, bytes,
                                  cudaMemcpyHostToDevice, stream_));
    PG_CUDA_CHECK(cudaEventRecord(slot->done, stream_));
  }

  Tensor UploadIds(const std::vector<int>& ids) {
    static_assert(sizeof(int) == sizeof(float));
    Tensor t = Alloc({static_cast<int64_t>(ids.size())});
    UploadBytes(ids.data(), ids.size() * sizeof(int), t.data());
    return t;
  }

  // <a, b> into a device double (pool memory, stream-ordered reuse).
  std::shared_ptr<void> DeviceDot(const Tensor& a, const Tensor& b) {
    CheckSameSize(a, b, "Dot");
    std::shared_ptr<void> d = Scratch(sizeof(double));
    cuda::Dot(stream_, a.numel(), a.data(), b.data(),
              static_cast<double*>(d.get()));
    CheckLaunch("Dot");
    return d;
  }

  // Temporary device memory that returns to the pool when it goes out of
  // scope (after the work using it was queued).
  std::shared_ptr<void> Scratch(size_t bytes) {
    std::shared_ptr<DevicePool> pool = pool_;
    void* p = pool->Get(bytes);
    return std::shared_ptr<void>(
        p, [pool, bytes](void* q) { pool->Put(q, bytes); });
  }

  std::unique_ptr<ConvPlan> MakePlan(const ConvGeometry& g, ConvPass pass,
                                     const ConvVariant& v) {
    auto plan = std::make_unique<ConvPlan>();
    plan->variant = v;
    const int pad = v.channels_last ? 8 : 1;
    plan->cin = static_cast<int>(RoundUp(g.in_channels, pad));
    plan->cout = static_cast<int>(RoundUp(g.out_channels, pad));
    const cudnnDataType_t dtype =
        v.math == ConvMath::kBf16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
    const cudnnTensorFormat_t format =
        v.channels_last ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW;
    PG_CUDNN_CHECK(cudnnCreateTensorDescriptor(&plan->x));
    PG_CUDNN_CHECK(cudnnCreateTensorDescriptor(&plan->y));
    PG_CUDNN_CHECK(cudnnCreateFilterDescriptor(&plan->w));
    PG_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&plan->conv));
    if (cudnnSetTensor4dDescriptor(plan->x, format, dtype, g.n, plan->cin,
                                   g.in_h, g.in_w) != CUDNN_STATUS_SUCCESS ||
        cudnnSetTensor4dDescriptor(plan->y, format, dtype, g.n, plan->cout,
                                   g.out_h(),
                                   g.out_w()) != CUDNN_STATUS_SUCCESS ||
        cudnnSetFilter4dDescriptor(plan->w, dtype, format, plan->cout,
                                   plan->cin, g.kh(),
                                   g.kw()) != CUDNN_STATUS_SUCCESS ||
        cudnnSetConvolution2dDescriptor(plan->conv, g.ph(), g.pw(), g.stride,
                                        g.stride, 1, 1, CUDNN_CROSS_CORRELATION,
                                        CUDNN_DATA_FLOAT) !=
            CUDNN_STATUS_SUCCESS ||
        cudnnSetConvolutionMathType(plan->conv, v.math == ConvMath::kFp32
                                                    ? CUDNN_FMA_MATH
                                                    : CUDNN_TENSOR_OP_MATH) !=
            CUDNN_STATUS_SUCCESS) {
      return plan;  // not ok: this variant cannot describe the shape
    }
    // cuDNN's heuristic ranking; Tune times the top few on real operands
    // (cudnnFind* would run every algorithm, minutes for a BigGAN-128).
    constexpr int kRequested = 8;
    int returned = 0;
    cudnnStatus_t st = CUDNN_STATUS_NOT_SUPPORTED;
    auto take = [&](const auto* perf) {
      for (int i = 0; st == CUDNN_STATUS_SUCCESS && i < returned; ++i) {
        if (perf[i].status != CUDNN_STATUS_SUCCESS ||
            perf[i].memory > kMaxWorkspace)
          continue;
        // Strict fp32 must not pick a tensor-op (TF32) algorithm.
        if (v.math == ConvMath::kFp32 && perf[i].mathType != CUDNN_FMA_MATH &&
            perf[i].mathType != CUDNN_DEFAULT_MATH)
          continue;
        plan->ranked.push_back(
            {static_cast<int>(perf[i].algo), perf[i].memory,
             v.math == ConvMath::kFp32 ? CUDNN_FMA_MATH : perf[i].mathType});
        if (plan->ranked.size() == kTopAlgorithms) break;
      }
    };
    switch (pass) {
      case ConvPass::kForward: {
        cudnnConvolutionFwdAlgoPerf_t perf[kRequested];
        st = cudnnGetConvolutionForwardAlgorithm_v7(
            cudnn_, plan->x, plan->w, plan->conv, plan->y, kRequested,
            &returned, perf);
        take(perf);
        break;
      }
      case ConvPass::kBackwardData: {
        cudnnConvolutionBwdDataAlgoPerf_t perf[kRequested];
        st = cudnnGetConvolutionBackwardDataAlgorithm_v7(
            cudnn_, plan->w, plan->y, plan->conv, plan->x, kRequested,
            &returned, perf);
        take(perf);
        break;
      }
      case ConvPass::kBackwardWeights: {
        cudnnConvolutionBwdFilterAlgoPerf_t perf[kRequested];
        st = cudnnGetConvolutionBackwardFilterAlgorithm_v7(
            cudnn_, plan->x, plan->y, plan->conv, plan->w, kRequested,
            &returned, perf);
        take(perf);
        break;
      }
    }
    cudaGetLastError();  // a refused variant must not poison later checks
    plan->ok = !plan->ranked.empty();
    if (plan->ok) plan->Use(plan->ranked[0]);
    return plan;
  }

  // Runs one pass with canonical operands: forward (in = x, w -> out = y),
  // backward data (in = dy, w -> out = dx), backward weights (in = x,
  // second = dy -> out = dw).
  cudnnStatus_t Execute(const ConvGeometry& g, ConvPass pass,
                        const ConvPlan& plan, const float* in,
                        const float* second, float* out) {
    const float one = 1.0f, zero = 0.0f;
    cudnnStatus_t st = CUDNN_STATUS_SUCCESS;
    std::shared_ptr<void> workspace;
    if (plan.workspace > 0) workspace = Scratch(plan.workspace);
    const int64_t hw_in = int64_t{g.in_h} * g.in_w;
    const int64_t hw_out = int64_t{g.out_h()} * g.out_w();
    const int64_t kk = int64_t{g.kh()} * g.kw();
    if (!plan.variant.channels_last) {
      // cuDNN reads and writes the canonical buffers directly.
      switch (pass) {
        case ConvPass::kForward:
          st = (cudnnConvolutionForward(
              cudnn_, &one, plan.x, in, plan.w, second, plan.conv,
              static_cast<cudnnConvolutionFwdAlgo_t>(plan.algo),
              workspace.get(), plan.workspace, &zero, plan.y, out));
          break;
        case ConvPass::kBackwardData:
          st = (cudnnConvolutionBackwardData(
              cudnn_, &one, plan.w, second, plan.y, in, plan.conv,
              static_cast<cudnnConvolutionBwdDataAlgo_t>(plan.algo),
              workspace.get(), plan.workspace, &zero, plan.x, out));
          break;
        case ConvPass::kBackwardWeights:
          st = (cudnnConvolutionBackwardFilter(
              cudnn_, &one, plan.x, in, plan.y, second, plan.conv,
              static_cast<cudnnConvolutionBwdFilterAlgo_t>(plan.algo),
              workspace.get(), plan.workspace, &zero, plan.w, out));
          break;
      }
      return st;
    }
    const cuda::ElementType type = plan.variant.math == ConvMath::kBf16
                                       ? cuda::ElementType::kBfloat16
                                       : cuda::ElementType::kFloat32;
    const size_t elem = type == cuda::ElementType::kBfloat16 ? 2 : 4;
    const int64_t cin = g.in_channels, cout = g.out_channels;
    const int64_t cin_p = plan.cin, cout_p = plan.cout;
    std::shared_ptr<void> xs = Scratch(elem * g.n * cin_p * hw_in);
    std::shared_ptr<void> ys = Scratch(elem * g.n * cout_p * hw_out);
    std::shared_ptr<void> ws = Scratch(elem * cout_p * cin_p * kk);
    switch (pass) {
      case ConvPass::kForward:
        cuda::ToChannelsLast(stream_, g.n, g.n, cin, cin_p, g.in_h, g.in_w, in,
                             type, xs.get());
        cuda::ToChannelsLast(stream_, cout, cout_p, cin, cin_p, g.kh(), g.kw(),
                             second, type, ws.get());
        CheckLaunch("to channels-last");
        st = (cudnnConvolutionForward(
            cudnn_, &one, plan.x, xs.get(), plan.w, ws.get(), plan.conv,
            static_cast<cudnnConvolutionFwdAlgo_t>(plan.algo), workspace.get(),
            plan.workspace, &zero, plan.y, ys.get()));
        cuda::FromChannelsLast(stream_, g.n, cout, cout_p, g.out_h(), g.out_w(),
                               ys.get(), type, out);
        break;
      case ConvPass::kBackwardData:
        cuda::ToChannelsLast(stream_, g.n, g.n, cout, cout_p, g.out_h(),
                             g.out_w(), in, type, ys.get());
        cuda::ToChannelsLast(stream_, cout, cout_p, cin, cin_p, g.kh(), g.kw(),
                             second, type, ws.get());
        CheckLaunch("to channels-last");
        st = (cudnnConvolutionBackwardData(
            cudnn_, &one, plan.w, ws.get(), plan.y, ys.get(), plan.conv,
            static_cast<cudnnConvolutionBwdDataAlgo_t>(plan.algo),
            workspace.get(), plan.workspace, &zero, plan.x, xs.get()));
        cuda::FromChannelsLast(stream_, g.n, cin, cin_p, g.in_h, g.in_w,
                               xs.get(), type, out);
        break;
      case ConvPass::kBackwardWeights:
        cuda::ToChannelsLast(stream_, g.n, g.n, cin, cin_p, g.in_h, g.in_w, in,
                             type, xs.get());
        cuda::ToChannelsLast(stream_, g.n, g.n, cout, cout_p, g.out_h(),
                             g.out_w(), second, type, ys.get());
        CheckLaunch("to channels-last");
        st = (cudnnConvolutionBackwardFilter(
            cudnn_, &one, plan.x, xs.get(), plan.y, ys.get(), plan.conv,
            static_cast<cudnnConvolutionBwdFilterAlgo_t>(plan.algo),
            workspace.get(), plan.workspace, &zero, plan.w, ws.get()));
        cuda::FromChannelsLast(stream_, cout, cin, cin_p, g.kh(), g.kw(),
                               ws.get(), type, out);
        break;
    }
    CheckLaunch("from channels-last");
    return st;
  }

  // Milliseconds of one Execute after an untimed warm-up (the first launch
  // of a kernel includes loading it): the faster of two timed runs, or the
  // first one alone when it is already slower than `give_up_ms` (a loser
  // need not be measured precisely). -1: the algorithm failed to run.
  float TimeVariant(const ConvGeometry& g, ConvPass pass, const ConvPlan& plan,
                    const float* in, const float* second, float* out,
                    float give_up_ms) {
    if (Execute(g, pass, plan, in, second, out) != CUDNN_STATUS_SUCCESS) {
      cudaGetLastError();
      return -1.0f;
    }
    cudaEvent_t start, stop;
    PG_CUDA_CHECK(cudaEventCreate(&start));
    PG_CUDA_CHECK(cudaEventCreate(&stop));
    float best = 1e30f;
    for (int rep = 0; rep < 2; ++rep) {
      PG_CUDA_CHECK(cudaEventRecord(start, stream_));
      Execute(g, pass, plan, in, second, out);
      PG_CUDA_CHECK(cudaEventRecord(stop, stream_));
      PG_CUDA_CHECK(cudaEventSynchronize(stop));
      float ms = 0;
      PG_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
      best = std::min(best, ms);
      if (give_up_ms > 0 && ms > give_up_ms) break;
    }
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    return best;
  }

  void RunConv(const ConvGeometry& g, ConvPass pass, const float* in,
               const float* second, float* out) {
    const ConvKey key = KeyOf(g, pass);
    auto it = choice_.find(key);
    if (it == choice_.end())
      it = choice_.emplace(key, Tune(g, pass, in, second, out)).first;
    const cudnnStatus_t st = Execute(g, pass, *it->second, in, second, out);
    PG_CHECK(st == CUDNN_STATUS_SUCCESS)
        << "cuDNN convolution " << GeometryName(g) << " " << PassName(pass)
        << " (" << it->second->variant.Name()
        << "): " << cudnnGetErrorString(st);
  }

  // Plans every allowed variant, times the ones cuDNN can run, keeps the
  // fastest. The timing runs write `out`, which Execute overwrites after.
  std::unique_ptr<ConvPlan> Tune(const ConvGeometry& g, ConvPass pass,
                                 const float* in, const float* second,
                                 float* out) {
    std::unique_ptr<ConvPlan> best;
    float best_ms = 0;
    std::vector<std::string> report;
    for (const ConvVariant& v : candidates_) {
      std::unique_ptr<ConvPlan> plan = MakePlan(g, pass, v);
      if (!plan->ok) {
        report.push_back(absl::StrCat(v.Name(), " unsupported"));
        continue;
      }
      // The variant's time is that of its fastest of cuDNN's top algorithms;
      // runs clearly slower than the best so far stop after the warm-up.
      float plan_ms = -1;
      size_t plan_algo = 0;
      for (size_t a = 0; a < plan->ranked.size(); ++a) {
        plan->Use(plan->ranked[a]);
        float bound = plan_ms;
        if (best && (bound < 0 || best_ms < bound)) bound = best_ms;
        const float ms = TimeVariant(g, pass, *plan, in, second, out,
                                     bound > 0 ? 2.0f * bound : 0.0f);
        if (ms >= 0 && (plan_ms < 0 || ms < plan_ms)) {
          plan_ms = ms;
          plan_algo = a;
        }
      }
      if (plan_ms < 0) {
        report.push_back(absl::StrCat(v.Name(), " failed to run"));
        continue;
      }
      plan->Use(plan->ranked[plan_algo]);
      report.push_back(absl::StrFormat("%s %.3f ms", v.Name(), plan_ms));
      if (!best || plan_ms < best_ms) {
        best_ms = plan_ms;
        best = std::move(plan);
      }
    }
    if (best == nullptr &&
        !(candidates_.size() == 1 && !candidates_[0].channels_last &&
          candidates_[0].math == ConvMath::kFp32)) {
      // The forced variant cannot run this shape: canonical fp32 always can.
      best = MakePlan(g, pass, ConvVariant{false, ConvMath::kFp32});
      if (best->ok)
        std::fprintf(stderr,
                     "cuda backend: conv %s %s: %s not available, using "
                     "NCHW fp32\n",
                     GeometryName(g).c_str(), PassName(pass),
                     absl::StrJoin(report, ", ").c_str());
      else
        best.reset();
    }
    PG_CHECK(best != nullptr)
        << "no cuDNN algorithm for convolution " << GeometryName(g) << " "
        << PassName(pass) << ": " << absl::StrJoin(report, ", ");
    if (options_.log_autotune)
      std::fprintf(stderr, "autotune gpu conv %s %s: %s (%s)\n",
                   GeometryName(g).c_str(), PassName(pass),
                   best->variant.Name().c_str(),
                   absl::StrJoin(report, ", ").c_str());
    return best;
  }

  static constexpr size_t kMaxWorkspace = size_t{256} << 20;
  static constexpr size_t kTopAlgorithms = 3;

  BackendOptions options_;
  std::shared_ptr<DevicePool> pool_;
  std::string device_name_;
  bool tensor_cores_ = false;
  cudaStream_t stream_ = nullptr;
  cudnnHandle_t cudnn_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  cublasComputeType_t gemm_compute_ = CUBLAS_COMPUTE_32F;
  std::vector<ConvVariant> candidates_;
  std::map<ConvKey, std::unique_ptr<ConvPlan>> choice_;
  std::vector<Staging> staging_;
  void* host_scalar_ = nullptr;           // pinned, for Dot / AllFinite
  std::shared_ptr<void> scratch_scalar_;  // device, one double
};

}  // namespace

absl::StatusOr<std::unique_ptr<Backend>> MakeCudaBackend(
    const BackendOptions& options) {
  return CudaBackend::Create(options);
}

}  // namespace paragan

// The CUDA backend's own kernels. Memory-bound elementwise and reduction
// work; convolutions and matrix products go to cuDNN and cuBLAS. Reductions
// mirror the CPU backend's math (two-pass batch statistics, the same
// association in Adam) so the two agree to float rounding.

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>

#include "worker/engine/cuda_kernels.h"

namespace paragan::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kReduceThreads = 512;

int Blocks(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(b, 8192)));
}

#define GRID_LOOP(i, n)                                                     \
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < (n); \
       i += int64_t{blockDim.x} * gridDim.x)

// Sum over the block; every thread gets the total. blockDim.x is a multiple
// of 32 and at most 1024.
__device__ float BlockSum(float v) {
  __shared__ float warp_sums[32];
  __shared__ float total;
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  if (warp == 0) {
    const int warps = blockDim.x >> 5;
    float s = lane < warps ? warp_sums[lane] : 0.0f;
    for (int o = 16; o > 0; o >>= 1) s += __shfl_down_sync(0xffffffffu, s, o);
    if (lane == 0) total = s;
  }
  __syncthreads();
  const float result = total;
  __syncthreads();  // warp_sums / total reusable by the next call
  return result;
}

__device__ float BlockMax(float v) {
  __shared__ float warp_max[32];
  __shared__ float total;
  for (int o = 16; o > 0; o >>= 1)
    v = fmaxf(v, __shfl_down_sync(0xffffffffu, v, o));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) warp_max[warp] = v;
  __syncthreads();
  if (warp == 0) {
    const int warps = blockDim.x >> 5;
    float s = lane < warps ? warp_max[lane] : -INFINITY;
    for (int o = 16; o > 0; o >>= 1)
      s = fmaxf(s, __shfl_down_sync(0xffffffffu, s, o));
    if (lane == 0) total = s;
  }
  __syncthreads();
  const float result = total;
  __syncthreads();
  return result;
}

// Threads of a per-channel reduction: enough to cover small channels without
// idling most of a 512-thread block.
int ReduceThreads(int64_t count) {
  int t = 32;
  while (t < kReduceThreads && t < count) t <<= 1;
  return t;
}

__global__ void FillKernel(int64_t n, float value, float* p) {
  GRID_LOOP(i, n) p[i] = value;
}

__global__ void AxpbyKernel(int64_t n, float alpha, const float* a, float beta,
                            const float* b, float* y) {
  GRID_LOOP(i, n) y[i] = alpha * a[i] + beta * b[i];
}

__global__ void ScaleKernel(int64_t n, float alpha, float* x) {
  GRID_LOOP(i, n) x[i] *= alpha;
}

__global__ void ActForwardKernel(int act, float slope, int64_t n,
                                 const float* x, float* y) {
  GRID_LOOP(i, n) {
    const float v = x[i];
    switch (act) {
      case 1:
        y[i] = v > 0 ? v : 0.0f;
        break;
      case 2:
        y[i] = v > 0 ? v : v * slope;
        break;
      case 3:
        y[i] = tanhf(v);
        break;
      default:
        y[i] = v;
    }
  }
}

__global__ void ActBackwardKernel(int act, float slope, int64_t n,
                                  const float* x, const float* y,
                                  const float* dy, float* dx) {
  GRID_LOOP(i, n) {
    const float d = dy[i];
    switch (act) {
      case 1:
        dx[i] = x[i] > 0 ? d : 0.0f;
        break;
      case 2:
        dx[i] = x[i] > 0 ? d : d * slope;
        break;
      case 3:
        dx[i] = d * (1 - y[i] * y[i]);
        break;
      default:
        dx[i] = d;
    }
  }
}

__global__ void AddRowBiasKernel(int64_t rows, int64_t f, const float* bias,
                                 float* y) {
  GRID_LOOP(i, rows * f) y[i] += bias[i % f];
}

// One thread per feature: rows is a batch size, small.
__global__ void RowBiasGradKernel(int64_t rows, int64_t f, const float* dy,
                                  float* db) {
  GRID_LOOP(j, f) {
    float s = 0;
    for (int64_t r = 0; r < rows; ++r) s += dy[r * f + j];
    db[j] = s;
  }
}

__global__ void AddChannelBiasKernel(int64_t n, int64_t c, int64_t hw,
                                     const float* bias, float* y) {
  GRID_LOOP(i, n * c * hw) y[i] += bias[(i / hw) % c];
}

// One block per channel.
__global__ void ChannelSumKernel(int64_t n, int64_t c, int64_t hw,
                                 const float* x, float* out) {
  const int64_t ch = blockIdx.x;
  float s = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float* row = x + (i * c + ch) * hw;
    for (int64_t j = threadIdx.x; j < hw; j += blockDim.x) s += row[j];
  }
  s = BlockSum(s);
  if (threadIdx.x == 0) out[ch] = s;
}

// One block per channel: mean, then the centred variance (two passes for
// accuracy), then xhat.
__global__ void BatchNormStatsKernel(int64_t n, int64_t c, int64_t hw,
                                     const float* x, float eps, float* mean,
                                     float* inv_std, float* xhat) {
  const int64_t ch = blockIdx.x;
  const double count = double(n) * hw;
  float s = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float* row = x + (i * c + ch) * hw;
    for (int64_t j = threadIdx.x; j < hw; j += blockDim.x) s += row[j];
  }
  const float mu = static_cast<float>(BlockSum(s) / count);
  float q = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float* row = x + (i * c + ch) * hw;
    for (int64_t j = threadIdx.x; j < hw; j += blockDim.x) {
      const float d = row[j] - mu;
      q += d * d;
    }
  }
  const double var = fmax(0.0, BlockSum(q) / count);
  const float is = static_cast<float>(1.0 / sqrt(var + eps));
  if (threadIdx.x == 0) {
    mean[ch] = mu;
    inv_std[ch] = is;
  }
  for (int64_t i = 0; i < n; ++i) {
    const float* row = x + (i * c + ch) * hw;
    float* out = xhat + (i * c + ch) * hw;
    for (int64_t j = threadIdx.x; j < hw; j += blockDim.x)
      out[j] = (row[j] - mu) * is;
  }
}

__global__ void BatchNormApplyKernel(int64_t n, int64_t c, int64_t hw,
                                     const float* x, const float* mean,
                                     const float* inv_std, float* xhat) {
  GRID_LOOP(i, n * c * hw) {
    const int64_t ch = (i / hw) % c;
    xhat[i] = (x[i] - mean[ch]) * inv_std[ch];
  }
}

__global__ void ChannelAffineKernel(int64_t n, int64_t c, int64_t hw,
                                    bool per_sample, const float* xhat,
                                    const float* gamma, const float* beta,
                                    float* y) {
  GRID_LOOP(i, n * c * hw) {
    const int64_t plane = i / hw;
    const int64_t k = per_sample ? plane : plane % c;
    y[i] = xhat[i] * gamma[k] + beta[k];
  }
}

// Per-sample gamma: one block per (sample, channel) plane.
__global__ void AffineGradPlaneKernel(int64_t hw, const float* dy,
                                      const float* xhat, const float* gamma,
                                      float* dxhat, float* dgamma,
                                      float* dbeta) {
  const int64_t plane = blockIdx.x;
  const float g = gamma[plane];
  const float* d = dy + plane * hw;
  const float* xr = xhat + plane * hw;
  float* o = dxhat + plane * hw;
  float rg = 0, rb = 0;
  for (int64_t j = threadIdx.x; j < hw; j += blockDim.x) {
    rg += d[j] * xr[j];
    rb += d[j];
    o[j] = d[j] * g;
  }
  rg = BlockSum(rg);
  rb = BlockSum(rb);
  if (threadIdx.x == 0) {
    dgamma[plane] = rg;
    dbeta[plane] = rb;
  }
}

// Shared gamma: one block per channel.
__global__ void AffineGradChannelKernel(int64_t n, int64_t c, int64_t hw,
                                        const float* dy, const float* xhat,
                                        const float* gamma, float* dxhat,
                                        float* dgamma, float* dbeta) {
  const int64_t ch = blockIdx.x;
  const float g = gamma[ch];
  float rg = 0, rb = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t base = (i * c + ch) * hw;
    for (int64_t j = threadIdx.x; j < hw; j += blockDim.x) {
      const float d = dy[base + j];
      rg += d * xhat[base + j];
      rb += d;
      dxhat[base + j] = d * g;
    }
  }
  rg = BlockSum(rg);
  rb = BlockSum(rb);
  if (threadIdx.x == 0) {
    dgamma[ch] = rg;
    dbeta[ch] = rb;
  }
}

__global__ void BatchNormBackwardKernel(int64_t n, int64_t c, int64_t hw,
                                        const float* dxhat, const float* xhat,
                                        const float* inv_std, float* dx) {
  const int64_t ch = blockIdx.x;
  float s1 = 0, s2 = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t base = (i * c + ch) * hw;
    for (int64_t j = threadIdx.x; j < hw; j += blockDim.x) {
      const float d = dxhat[base + j];
      s1 += d;
      s2 += d * xhat[base + j];
    }
  }
  const float inv_count = 1.0f / static_cast<float>(n * hw);
  const float m1 = BlockSum(s1) * inv_count;
  const float m2 = BlockSum(s2) * inv_count;
  const float is = inv_std[ch];
  for (int64_t i = 0; i < n; ++i) {
    const int64_t base = (i * c + ch) * hw;
    for (int64_t j = threadIdx.x; j < hw; j += blockDim.x)
      dx[base + j] = is * (dxhat[base + j] - m1 - xhat[base + j] * m2);
  }
}

__global__ void RunningStatsKernel(int64_t c, const float* mean,
                                   const float* inv_std, float eps,
                                   double unbias, float momentum,
                                   float* running_mean, float* running_var) {
  GRID_LOOP(i, c) {
    const double is = inv_std[i];
    const double var = 1.0 / (is * is) - eps;
    running_mean[i] = static_cast<float>((1 - momentum) * running_mean[i] +
                                         momentum * double{mean[i]});
    running_var[i] = static_cast<float>((1 - momentum) * running_var[i] +
                                        momentum * var * unbias);
  }
}

__global__ void InvStdKernel(int64_t n, const float* var, float eps,
                             float* out) {
  GRID_LOOP(i, n) out[i] = 1.0f / sqrtf(var[i] + eps);
}

// Indexing below: (p, i, j) over the small grid [planes, h, w].
__global__ void UpsampleFwdKernel(int64_t planes, int64_t h, int64_t w,
                                  const float* x, float* y) {
  GRID_LOOP(idx, planes * h * w) {
    const int64_t j = idx % w, i = (idx / w) % h, p = idx / (h * w);
    const float v = x[idx];
    float* r0 = y + (p * 2 * h + 2 * i) * 2 * w + 2 * j;
    r0[0] = r0[1] = r0[2 * w] = r0[2 * w + 1] = v;
  }
}

__global__ void UpsampleBwdKernel(int64_t planes, int64_t h, int64_t w,
                                  const float* dy, float* dx) {
  GRID_LOOP(idx, planes * h * w) {
    const int64_t j = idx % w, i = (idx / w) % h, p = idx / (h * w);
    const float* r0 = dy + (p * 2 * h + 2 * i) * 2 * w + 2 * j;
    dx[idx] = r0[0] + r0[1] + r0[2 * w] + r0[2 * w + 1];
  }
}

__global__ void AvgPoolFwdKernel(int64_t planes, int64_t h, int64_t w,
                                 const float* x, float* y) {
  GRID_LOOP(idx, planes * h * w) {
    const int64_t j = idx % w, i = (idx / w) % h, p = idx / (h * w);
    const float* r0 = x + (p * 2 * h + 2 * i) * 2 * w + 2 * j;
    y[idx] = 0.25f * (r0[0] + r0[1] + r0[2 * w] + r0[2 * w + 1]);
  }
}

__global__ void AvgPoolBwdKernel(int64_t planes, int64_t h, int64_t w,
                                 const float* dy, float* dx) {
  GRID_LOOP(idx, planes * h * w) {
    const int64_t j = idx % w, i = (idx / w) % h, p = idx / (h * w);
    const float v = 0.25f * dy[idx];
    float* r0 = dx + (p * 2 * h + 2 * i) * 2 * w + 2 * j;
    r0[0] = r0[1] = r0[2 * w] = r0[2 * w + 1] = v;
  }
}

__global__ void MaxPoolFwdKernel(int64_t planes, int64_t h, int64_t w,
                                 const float* x, float* y) {
  GRID_LOOP(idx, planes * h * w) {
    const int64_t j = idx % w, i = (idx / w) % h, p = idx / (h * w);
    const float* r0 = x + (p * 2 * h + 2 * i) * 2 * w + 2 * j;
    y[idx] = fmaxf(fmaxf(r0[0], r0[1]), fmaxf(r0[2 * w], r0[2 * w + 1]));
  }
}

__global__ void MaxPoolBwdKernel(int64_t planes, int64_t h, int64_t w,
                                 const float* x, const float* dy, float* dx) {
  GRID_LOOP(idx, planes * h * w) {
    const int64_t j = idx % w, i = (idx / w) % h, p = idx / (h * w);
    const int64_t base = (p * 2 * h + 2 * i) * 2 * w + 2 * j;
    const int64_t cand[4] = {base, base + 1, base + 2 * w, base + 2 * w + 1};
    int64_t best = cand[0];
    for (int k = 1; k < 4; ++k)
      if (x[cand[k]] > x[best]) best = cand[k];  // first maximum, as PyTorch
    for (int k = 0; k < 4; ++k) dx[cand[k]] = 0;
    dx[best] = dy[idx];
  }
}

// One warp per plane.
__global__ void SpatialSumKernel(int64_t planes, int64_t hw, const float* x,
                                 float* y) {
  const int64_t warp = (blockIdx.x * int64_t{blockDim.x} + threadIdx.x) >> 5;
  const int lane = threadIdx.x & 31;
  if (warp >= planes) return;
  float s = 0;
  for (int64_t j = lane; j < hw; j += 32) s += x[warp * hw + j];
  for (int o = 16; o > 0; o >>= 1) s += __shfl_down_sync(0xffffffffu, s, o);
  if (lane == 0) y[warp] = s;
}

__global__ void SpatialSumBwdKernel(int64_t planes, int64_t hw, const float* dy,
                                    float* dx) {
  GRID_LOOP(i, planes * hw) dx[i] = dy[i / hw];
}

// One block per row.
__global__ void SoftmaxFwdKernel(int64_t cols, const float* x, float* y) {
  const float* in = x + blockIdx.x * cols;
  float* out = y + blockIdx.x * cols;
  float mx = -INFINITY;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x)
    mx = fmaxf(mx, in[j]);
  mx = BlockMax(mx);
  float s = 0;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
    const float e = expf(in[j] - mx);
    out[j] = e;
    s += e;
  }
  const float inv = 1.0f / BlockSum(s);
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) out[j] *= inv;
}

__global__ void SoftmaxBwdKernel(int64_t cols, const float* y, const float* dy,
                                 float* dx) {
  const int64_t base = blockIdx.x * cols;
  float dot = 0;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x)
    dot += y[base + j] * dy[base + j];
  dot = BlockSum(dot);
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x)
    dx[base + j] = y[base + j] * (dy[base + j] - dot);
}

__global__ void GatherRowsKernel(int64_t count, int64_t d, const float* table,
                                 const int* ids, float* y) {
  GRID_LOOP(i, count * d) y[i] = table[int64_t{ids[i / d]} * d + i % d];
}

__global__ void ScatterAddRowsKernel(int64_t count, int64_t d, const float* dy,
                                     const int* ids, float* dtable) {
  GRID_LOOP(i, count * d)
  atomicAdd(dtable + int64_t{ids[i / d]} * d + i % d, dy[i]);
}

__global__ void RowDotKernel(int64_t f, const float* a, const float* b,
                             float* out) {
  const int64_t base = blockIdx.x * f;
  float s = 0;
  for (int64_t j = threadIdx.x; j < f; j += blockDim.x)
    s += a[base + j] * b[base + j];
  s = BlockSum(s);
  if (threadIdx.x == 0) out[blockIdx.x] = s;
}

__global__ void AdamKernel(int64_t n, float step_size, float bc2_sqrt,
                           float beta1, float beta2, float eps,
                           const float* grad, float* param, float* m,
                           float* v) {
  GRID_LOOP(i, n) {
    const float g = grad[i];
    const float mi = beta1 * m[i] + (1 - beta1) * g;
    const float vi = beta2 * v[i] + (1 - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    const float denom = sqrtf(vi) / bc2_sqrt + eps;
    param[i] -= step_size * (mi / denom);
  }
}

__global__ void EmaKernel(int64_t n, float decay, const float* p, float* e) {
  GRID_LOOP(i, n) e[i] = decay * e[i] + (1 - decay) * p[i];
}

__global__ void DotKernel(int64_t n, const float* a, const float* b,
                          double* out) {
  float s = 0;
  GRID_LOOP(i, n) s += a[i] * b[i];
  s = BlockSum(s);
  if (threadIdx.x == 0) atomicAdd(out, double{s});
}

__global__ void NonFiniteKernel(int64_t n, const float* x, int* flag) {
  GRID_LOOP(i, n) {
    if (!isfinite(x[i])) *flag = 1;
  }
}

__global__ void ScaleByInverseNormKernel(int64_t n, const double* dot,
                                         float* v) {
  const float norm = sqrtf(static_cast<float>(*dot));
  const float f = 1.0f / fmaxf(norm, 1e-12f);
  GRID_LOOP(i, n) v[i] *= f;
}

__global__ void SpectralNormWeightKernel(int64_t n, const double* dot,
                                         const float* w, float* sigma,
                                         float* w_sn) {
  const float s = static_cast<float>(*dot);
  const float inv = 1.0f / s;
  if (blockIdx.x == 0 && threadIdx.x == 0) *sigma = s;
  GRID_LOOP(i, n) w_sn[i] = inv * w[i];
}

__global__ void SpectralNormBackwardKernel(int64_t rows, int64_t cols,
                                           const double* dot,
                                           const float* sigma,
                                           const float* dw_sn, const float* u,
                                           const float* v, float* dw) {
  const float s = *sigma;
  const float inv = 1.0f / s;
  const float coef = -static_cast<float>(*dot) / s;
  GRID_LOOP(idx, rows * cols) {
    const int64_t i = idx / cols, j = idx % cols;
    dw[idx] = inv * dw_sn[idx] + coef * u[i] * v[j];
  }
}

__global__ void AxpbyScalarKernel(int64_t n, const float* alpha, const float* x,
                                  float beta, float* y) {
  const float a = *alpha;
  if (beta == 0.0f) {
    GRID_LOOP(i, n) y[i] = a * x[i];
  } else {
    GRID_LOOP(i, n) y[i] = a * x[i] + beta * y[i];
  }
}

__global__ void AddDotKernel(const double* dot, float* out) {
  *out += static_cast<float>(*dot);
}

template <typename T>
__device__ T FromFloat(float v);
template <>
__device__ float FromFloat<float>(float v) {
  return v;
}
template <>
__device__ __nv_bfloat16 FromFloat<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}
__device__ float ToFloat(float v) { return v; }
__device__ float ToFloat(__nv_bfloat16 v) { return __bfloat162float(v); }

// One thread per destination element [rows_padded, h, w, c_padded].
template <typename T>
__global__ void ToChannelsLastKernel(int64_t rows, int64_t rows_padded,
                                     int64_t c, int64_t cp, int64_t h,
                                     int64_t w, const float* src, T* dst) {
  GRID_LOOP(idx, rows_padded * h * w * cp) {
    const int64_t ch = idx % cp;
    const int64_t pix = (idx / cp) % (h * w);
    const int64_t r = idx / (cp * h * w);
    const float v =
        (r < rows && ch < c) ? src[(r * c + ch) * h * w + pix] : 0.0f;
    dst[idx] = FromFloat<T>(v);
  }
}

// One thread per canonical destination element [rows, c, h, w].
template <typename T>
__global__ void FromChannelsLastKernel(int64_t rows, int64_t c, int64_t cp,
                                       int64_t h, int64_t w, const T* src,
                                       float* dst) {
  GRID_LOOP(idx, rows * c * h * w) {
    const int64_t pix = idx % (h * w);
    const int64_t ch = (idx / (h * w)) % c;
    const int64_t r = idx / (c * h * w);
    dst[idx] = ToFloat(src[(r * h * w + pix) * cp + ch]);
  }
}

__global__ void FloatToBf16Kernel(int64_t n, const float* src,
                                  __nv_bfloat16* dst) {
  GRID_LOOP(i, n) dst[i] = __float2bfloat16_rn(src[i]);
}

__global__ void Bf16ToFloatKernel(int64_t n, const __nv_bfloat16* src,
                                  float* dst) {
  GRID_LOOP(i, n) dst[i] = __bfloat162float(src[i]);
}

// One thread per output element; the window loop is the CPU backend's.
__global__ void Pool2dFwdKernel(int64_t planes, int h, int w, int ho, int wo,
                                int k, int s, int pad, int mode, const float* x,
                                float* y) {
  GRID_LOOP(idx, planes * ho * wo) {
    const int j = static_cast<int>(idx % wo);
    const int i = static_cast<int>((idx / wo) % ho);
    const int64_t p = idx / (int64_t{ho} * wo);
    const float* in = x + p * h * w;
    const int r0 = max(i * s - pad, 0), r1 = min(i * s - pad + k, h);
    const int c0 = max(j * s - pad, 0), c1 = min(j * s - pad + k, w);
    if (mode == 0) {
      float m = in[r0 * w + c0];
      for (int r = r0; r < r1; ++r)
        for (int c = c0; c < c1; ++c) m = fmaxf(m, in[r * w + c]);
      y[idx] = m;
    } else {
      float sum = 0;
      for (int r = r0; r < r1; ++r)
        for (int c = c0; c < c1; ++c) sum += in[r * w + c];
      const int count = mode == 1 ? k * k : (r1 - r0) * (c1 - c0);
      y[idx] = sum / static_cast<float>(count);
    }
  }
}

// PyTorch's source index and weights (align_corners=False), in float like
// the CPU backend's BilinearTaps.
__device__ void BilinearTapAt(int64_t o, int64_t in_size, float scale,
                              int64_t* i0, int64_t* i1, float* w0, float* w1) {
  float src = scale * (static_cast<float>(o) + 0.5f) - 0.5f;
  if (src < 0) src = 0;
  *i0 = min(static_cast<int64_t>(src), in_size - 1);
  *i1 = *i0 + (*i0 < in_size - 1 ? 1 : 0);
  *w1 = fminf(fmaxf(src - static_cast<float>(*i0), 0.0f), 1.0f);
  *w0 = 1.0f - *w1;
}

__global__ void ResizeBilinearKernel(int64_t planes, int64_t h, int64_t w,
                                     int64_t ho, int64_t wo, float scale_h,
                                     float scale_w, const float* x, float* y) {
  GRID_LOOP(idx, planes * ho * wo) {
    const int64_t j = idx % wo;
    const int64_t i = (idx / wo) % ho;
    const int64_t p = idx / (ho * wo);
    int64_t r0, r1, c0, c1;
    float rw0, rw1, cw0, cw1;
    BilinearTapAt(i, h, scale_h, &r0, &r1, &rw0, &rw1);
    BilinearTapAt(j, w, scale_w, &c0, &c1, &cw0, &cw1);
    const float* in0 = x + (p * h + r0) * w;
    const float* in1 = x + (p * h + r1) * w;
    y[idx] = rw0 * (cw0 * in0[c0] + cw1 * in0[c1]) +
             rw1 * (cw0 * in1[c0] + cw1 * in1[c1]);
  }
}

}  // namespace

void Fill(cudaStream_t s, int64_t n, float value, float* p) {
  if (n > 0) FillKernel<<<Blocks(n), kThreads, 0, s>>>(n, value, p);
}
void Axpby(cudaStream_t s, int64_t n, float alpha, const float* a, float beta,
           const float* b, float* y) {
  if (n > 0)
    AxpbyKernel<<<Blocks(n), kThreads, 0, s>>>(n, alpha, a, beta, b, y);
}
void Scale(cudaStream_t s, int64_t n, float alpha, float* x) {
  if (n > 0) ScaleKernel<<<Blocks(n), kThreads, 0, s>>>(n, alpha, x);
}
void ActivationForward(cudaStream_t s, int act, float slope, int64_t n,
                       const float* x, float* y) {
  if (n > 0)
    ActForwardKernel<<<Blocks(n), kThreads, 0, s>>>(act, slope, n, x, y);
}
void ActivationBackward(cudaStream_t s, int act, float slope, int64_t n,
                        const float* x, const float* y, const float* dy,
                        float* dx) {
  if (n > 0)
    ActBackwardKernel<<<Blocks(n), kThreads, 0, s>>>(act, slope, n, x, y, dy,
                                                     dx);
}
void AddRowBias(cudaStream_t s, int64_t rows, int64_t f, const float* bias,
                float* y) {
  if (rows * f > 0)
    AddRowBiasKernel<<<Blocks(rows * f), kThreads, 0, s>>>(rows, f, bias, y);
}
void RowBiasGrad(cudaStream_t s, int64_t rows, int64_t f, const float* dy,
                 float* db) {
  if (f > 0) RowBiasGradKernel<<<Blocks(f), kThreads, 0, s>>>(rows, f, dy, db);
}
void AddChannelBias(cudaStream_t s, int64_t n, int64_t c, int64_t hw,
                    const float* bias, float* y) {
  const int64_t total = n * c * hw;
  if (total > 0)
    AddChannelBiasKernel<<<Blocks(total), kThreads, 0, s>>>(n, c, hw, bias, y);
}
void ChannelBiasGrad(cudaStream_t s, int64_t n, int64_t c, int64_t hw,
                     const float* dy, float* db) {
  if (c > 0) ChannelSumKernel<<<c, ReduceThreads(hw), 0, s>>>(n, c, hw, dy, db);
}
void BatchNormStats(cudaStream_t s, int64_t n, int64_t c, int64_t hw,
                    const float* x, float eps, float* mean, float* inv_std,
                    float* xhat) {
  if (c > 0)
    BatchNormStatsKernel<<<c, ReduceThreads(n * hw), 0, s>>>(
        n, c, hw, x, eps, mean, inv_std, xhat);
}
void BatchNormApply(cudaStream_t s, int64_t n, int64_t c, int64_t hw,
                    const float* x, const float* mean, const float* inv_std,
                    float* xhat) {
  const int64_t total = n * c * hw;
  if (total > 0)
    BatchNormApplyKernel<<<Blocks(total), kThreads, 0, s>>>(n, c, hw, x, mean,
                                                            inv_std, xhat);
}
void ChannelAffine(cudaStream_t s, int64_t n, int64_t c, int64_t hw,
                   bool per_sample, const float* xhat, const float* gamma,
                   const float* beta, float* y) {
  const int64_t total = n * c * hw;
  if (total > 0)
    ChannelAffineKernel<<<Blocks(total), kThreads, 0, s>>>(
        n, c, hw, per_sample, xhat, gamma, beta, y);
}
void ChannelAffineBackward(cudaStream_t s, int64_t n, int64_t c, int64_t hw,
                           bool per_sample, const float* dy, const float* xhat,
                           const float* gamma, float* dxhat, float* dgamma,
                           float* dbeta) {
  if (n * c == 0) return;
  if (per_sample) {
    AffineGradPlaneKernel<<<n * c, ReduceThreads(hw), 0, s>>>(
        hw, dy, xhat, gamma, dxhat, dgamma, dbeta);
  } else {
    AffineGradChannelKernel<<<c, ReduceThreads(n * hw), 0, s>>>(
        n, c, hw, dy, xhat, gamma, dxhat, dgamma, dbeta);
  }
}
void BatchNormBackward(cudaStream_t s, int64_t n, int64_t c, int64_t hw,
                       const float* dxhat, const float* xhat,
                       const float* inv_std, float* dx) {
  if (c > 0)
    BatchNormBackwardKernel<<<c, ReduceThreads(n * hw), 0, s>>>(
        n, c, hw, dxhat, xhat, inv_std, dx);
}
void UpdateRunningStats(cudaStream_t s, int64_t c, const float* mean,
                        const float* inv_std, float eps, int64_t count,
                        float momentum, float* running_mean,
                        float* running_var) {
  const double unbias = count > 1 ? double(count) / (count - 1) : 1.0;
  if (c > 0)
    RunningStatsKernel<<<Blocks(c), kThreads, 0, s>>>(
        c, mean, inv_std, eps, unbias, momentum, running_mean, running_var);
}
void InvStd(cudaStream_t s, int64_t n, const float* var, float eps,
            float* inv_std) {
  if (n > 0) InvStdKernel<<<Blocks(n), kThreads, 0, s>>>(n, var, eps, inv_std);
}
void Upsample2xForward(cudaStream_t s, int64_t planes, int64_t h, int64_t w,
                       const float* x, float* y) {
  const int64_t n = planes * h * w;
  if (n > 0)
    UpsampleFwdKernel<<<Blocks(n), kThreads, 0, s>>>(planes, h, w, x, y);
}
void Upsample2xBackward(cudaStream_t s, int64_t planes, int64_t h, int64_t w,
                        const float* dy, float* dx) {
  const int64_t n = planes * h * w;
  if (n > 0)
    UpsampleBwdKernel<<<Blocks(n), kThreads, 0, s>>>(planes, h, w, dy, dx);
}
void AvgPool2xForward(cudaStream_t s, int64_t planes, int64_t h, int64_t w,
                      const float* x, float* y) {
  const int64_t n = planes * h * w;
  if (n > 0)
    AvgPoolFwdKernel<<<Blocks(n), kThreads, 0, s>>>(planes, h, w, x, y);
}
void AvgPool2xBackward(cudaStream_t s, int64_t planes, int64_t h, int64_t w,
                       const float* dy, float* dx) {
  const int64_t n = planes * h * w;
  if (n > 0)
    AvgPoolBwdKernel<<<Blocks(n), kThreads, 0, s>>>(planes, h, w, dy, dx);
}
void MaxPool2xForward(cudaStream_t s, int64_t planes, int64_t h, int64_t w,
                      const float* x, float* y) {
  const int64_t n = planes * h * w;
  if (n > 0)
    MaxPoolFwdKernel<<<Blocks(n), kThreads, 0, s>>>(planes, h, w, x, y);
}
void MaxPool2xBackward(cudaStream_t s, int64_t planes, int64_t h, int64_t w,
                       const float* x, const float* dy, float* dx) {
  const int64_t n = planes * h * w;
  if (n > 0)
    MaxPoolBwdKernel<<<Blocks(n), kThreads, 0, s>>>(planes, h, w, x, dy, dx);
}
void SpatialSumForward(cudaStream_t s, int64_t planes, int64_t hw,
                       const float* x, float* y) {
  if (planes == 0) return;
  const int64_t threads = planes * 32;
  SpatialSumKernel<<<(threads + kThreads - 1) / kThreads, kThreads, 0, s>>>(
      planes, hw, x, y);
}
void SpatialSumBackward(cudaStream_t s, int64_t planes, int64_t hw,
                        const float* dy, float* dx) {
  const int64_t n = planes * hw;
  if (n > 0)
    SpatialSumBwdKernel<<<Blocks(n), kThreads, 0, s>>>(planes, hw, dy, dx);
}
void Pool2dForward(cudaStream_t s, int64_t planes, int h, int w, int ho, int wo,
                   int kernel, int stride, int padding, int mode,
                   const float* x, float* y) {
  const int64_t n = planes * ho * wo;
  if (n > 0)
    Pool2dFwdKernel<<<Blocks(n), kThreads, 0, s>>>(planes, h, w, ho, wo, kernel,
                                                   stride, padding, mode, x, y);
}
void ResizeBilinearForward(cudaStream_t s, int64_t planes, int64_t h, int64_t w,
                           int64_t ho, int64_t wo, const float* x, float* y) {
  const int64_t n = planes * ho * wo;
  if (n > 0)
    ResizeBilinearKernel<<<Blocks(n), kThreads, 0, s>>>(
        planes, h, w, ho, wo, static_cast<float>(h) / ho,
        static_cast<float>(w) / wo, x, y);
}
void SoftmaxForward(cudaStream_t s, int64_t rows, int64_t cols, const float* x,
                    float* y) {
  if (rows > 0)
    SoftmaxFwdKernel<<<rows, ReduceThreads(cols), 0, s>>>(cols, x, y);
}
void SoftmaxBackward(cudaStream_t s, int64_t rows, int64_t cols, const float* y,
                     const float* dy, float* dx) {
  if (rows > 0)
    SoftmaxBwdKernel<<<rows, ReduceThreads(cols), 0, s>>>(cols, y, dy, dx);
}
void GatherRows(cudaStream_t s, int64_t count, int64_t d, const float* table,
                const int* ids, float* y) {
  if (count * d > 0)
    GatherRowsKernel<<<Blocks(count * d), kThreads, 0, s>>>(count, d, table,
                                                            ids, y);
}
void ScatterAddRows(cudaStream_t s, int64_t count, int64_t d, const float* dy,
                    const int* ids, float* dtable) {
  if (count * d > 0)
    ScatterAddRowsKernel<<<Blocks(count * d), kThreads, 0, s>>>(count, d, dy,
                                                                ids, dtable);
}
void RowDot(cudaStream_t s, int64_t rows, int64_t f, const float* a,
            const float* b, float* out) {
  if (rows > 0) RowDotKernel<<<rows, ReduceThreads(f), 0, s>>>(f, a, b, out);
}
void Adam(cudaStream_t s, int64_t n, float step_size, float bc2_sqrt,
          float beta1, float beta2, float eps, const float* grad, float* param,
          float* m, float* v) {
  if (n > 0)
    AdamKernel<<<Blocks(n), kThreads, 0, s>>>(n, step_size, bc2_sqrt, beta1,
                                              beta2, eps, grad, param, m, v);
}
void Ema(cudaStream_t s, int64_t n, float decay, const float* param,
         float* ema) {
  if (n > 0) EmaKernel<<<Blocks(n), kThreads, 0, s>>>(n, decay, param, ema);
}
void Dot(cudaStream_t s, int64_t n, const float* a, const float* b,
         double* out) {
  cudaMemsetAsync(out, 0, sizeof(double), s);
  if (n > 0)
    DotKernel<<<std::min(Blocks(n), 1024), kThreads, 0, s>>>(n, a, b, out);
}
void ScaleByInverseNorm(cudaStream_t s, int64_t n, const double* dot,
                        float* v) {
  if (n > 0) ScaleByInverseNormKernel<<<Blocks(n), kThreads, 0, s>>>(n, dot, v);
}
void SpectralNormWeight(cudaStream_t s, int64_t n, const double* dot,
                        const float* w, float* sigma, float* w_sn) {
  if (n > 0)
    SpectralNormWeightKernel<<<Blocks(n), kThreads, 0, s>>>(n, dot, w, sigma,
                                                            w_sn);
}
void SpectralNormBackward(cudaStream_t s, int64_t rows, int64_t cols,
                          const double* dot, const float* sigma,
                          const float* dw_sn, const float* u, const float* v,
                          float* dw) {
  if (rows * cols > 0)
    SpectralNormBackwardKernel<<<Blocks(rows * cols), kThreads, 0, s>>>(
        rows, cols, dot, sigma, dw_sn, u, v, dw);
}
void AxpbyScalar(cudaStream_t s, int64_t n, const float* alpha, const float* x,
                 float beta, float* y) {
  if (n > 0)
    AxpbyScalarKernel<<<Blocks(n), kThreads, 0, s>>>(n, alpha, x, beta, y);
}
void AddDot(cudaStream_t s, const double* dot, float* out) {
  AddDotKernel<<<1, 1, 0, s>>>(dot, out);
}
void AnyNonFinite(cudaStream_t s, int64_t n, const float* x, int* flag) {
  cudaMemsetAsync(flag, 0, sizeof(int), s);
  if (n > 0) NonFiniteKernel<<<Blocks(n), kThreads, 0, s>>>(n, x, flag);
}
void ToChannelsLast(cudaStream_t s, int64_t rows, int64_t rows_padded,
                    int64_t c, int64_t c_padded, int64_t h, int64_t w,
                    const float* src, ElementType type, void* dst) {
  const int64_t n = rows_padded * h * w * c_padded;
  if (n == 0) return;
  if (type == ElementType::kFloat32) {
    ToChannelsLastKernel<float><<<Blocks(n), kThreads, 0, s>>>(
        rows, rows_padded, c, c_padded, h, w, src, static_cast<float*>(dst));
  } else {
    ToChannelsLastKernel<__nv_bfloat16>
        <<<Blocks(n), kThreads, 0, s>>>(rows, rows_padded, c, c_padded, h, w,
                                        src, static_cast<__nv_bfloat16*>(dst));
  }
}
void FromChannelsLast(cudaStream_t s, int64_t rows, int64_t c, int64_t c_padded,
                      int64_t h, int64_t w, const void* src, ElementType type,
                      float* dst) {
  const int64_t n = rows * c * h * w;
  if (n == 0) return;
  if (type == ElementType::kFloat32) {
    FromChannelsLastKernel<float><<<Blocks(n), kThreads, 0, s>>>(
        rows, c, c_padded, h, w, static_cast<const float*>(src), dst);
  } else {
    FromChannelsLastKernel<__nv_bfloat16><<<Blocks(n), kThreads, 0, s>>>(
        rows, c, c_padded, h, w, static_cast<const __nv_bfloat16*>(src), dst);
  }
}
void FloatToBfloat16(cudaStream_t s, int64_t n, const float* src, void* dst) {
  if (n > 0)
    FloatToBf16Kernel<<<Blocks(n), kThreads, 0, s>>>(
        n, src, static_cast<__nv_bfloat16*>(dst));
}
void Bfloat16ToFloat(cudaStream_t s, int64_t n, const void* src, float* dst) {
  if (n > 0)
    Bf16ToFloatKernel<<<Blocks(n), kThreads, 0, s>>>(
        n, static_cast<const __nv_bfloat16*>(src), dst);
}

}  // namespace paragan::cuda

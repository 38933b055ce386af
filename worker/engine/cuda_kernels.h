#ifndef PARAGAN_WORKER_ENGINE_CUDA_KERNELS_H_
#define PARAGAN_WORKER_ENGINE_CUDA_KERNELS_H_

// Launchers of the CUDA backend's own kernels (everything that is not a
// cuDNN convolution or a cuBLAS product). Compiled by nvcc; this header is
// plain C++ so the host compiler can include it. All pointers are device
// pointers, tensors are canonical NCHW float32 unless a name says otherwise,
// and every launch is queued on `stream`.

#include <cuda_runtime_api.h>

#include <cstdint>

namespace paragan::cuda {

void Fill(cudaStream_t stream, int64_t n, float value, float* p);
void Axpby(cudaStream_t stream, int64_t n, float alpha, const float* a,
           float beta, const float* b, float* y);
void Scale(cudaStream_t stream, int64_t n, float alpha, float* x);

// act: 0 identity, 1 relu, 2 leaky relu, 3 tanh (Activation's order).
void ActivationForward(cudaStream_t stream, int act, float slope, int64_t n,
                       const float* x, float* y);
void ActivationBackward(cudaStream_t stream, int act, float slope, int64_t n,
                        const float* x, const float* y, const float* dy,
                        float* dx);

void AddRowBias(cudaStream_t stream, int64_t rows, int64_t f, const float* bias,
                float* y);
void RowBiasGrad(cudaStream_t stream, int64_t rows, int64_t f, const float* dy,
                 float* db);
void AddChannelBias(cudaStream_t stream, int64_t n, int64_t c, int64_t hw,
                    const float* bias, float* y);
void ChannelBiasGrad(cudaStream_t stream, int64_t n, int64_t c, int64_t hw,
                     const float* dy, float* db);

void BatchNormStats(cudaStream_t stream, int64_t n, int64_t c, int64_t hw,
                    const float* x, float eps, float* mean, float* inv_std,
                    float* xhat);
void BatchNormApply(cudaStream_t stream, int64_t n, int64_t c, int64_t hw,
                    const float* x, const float* mean, const float* inv_std,
                    float* xhat);
void ChannelAffine(cudaStream_t stream, int64_t n, int64_t c, int64_t hw,
                   bool per_sample, const float* xhat, const float* gamma,
                   const float* beta, float* y);
void ChannelAffineBackward(cudaStream_t stream, int64_t n, int64_t c,
                           int64_t hw, bool per_sample, const float* dy,
                           const float* xhat, const float* gamma, float* dxhat,
                           float* dgamma, float* dbeta);
void BatchNormBackward(cudaStream_t stream, int64_t n, int64_t c, int64_t hw,
                       const float* dxhat, const float* xhat,
                       const float* inv_std, float* dx);
void UpdateRunningStats(cudaStream_t stream, int64_t c, const float* mean,
                        const float* inv_std, float eps, int64_t count,
                        float momentum, float* running_mean,
                        float* running_var);
void InvStd(cudaStream_t stream, int64_t n, const float* var, float eps,
            float* inv_std);

// Spatial ops: planes = N * C; h, w of the smaller tensor (input of
// upsampling, output of pooling).
void Upsample2xForward(cudaStream_t stream, int64_t planes, int64_t h,
                       int64_t w, const float* x, float* y);
void Upsample2xBackward(cudaStream_t stream, int64_t planes, int64_t h,
                        int64_t w, const float* dy, float* dx);
void AvgPool2xForward(cudaStream_t stream, int64_t planes, int64_t h, int64_t w,
                      const float* x, float* y);
void AvgPool2xBackward(cudaStream_t stream, int64_t planes, int64_t h,
                       int64_t w, const float* dy, float* dx);
void MaxPool2xForward(cudaStream_t stream, int64_t planes, int64_t h, int64_t w,
                      const float* x, float* y);
void MaxPool2xBackward(cudaStream_t stream, int64_t planes, int64_t h,
                       int64_t w, const float* x, const float* dy, float* dx);
void SpatialSumForward(cudaStream_t stream, int64_t planes, int64_t hw,
                       const float* x, float* y);
void SpatialSumBackward(cudaStream_t stream, int64_t planes, int64_t hw,
                        const float* dy, float* dx);
// General pooling forward over planes of h x w -> ho x wo; mode is
// PoolMode's order (0 max, 1 average including padding, 2 average over the
// in-bounds elements).
void Pool2dForward(cudaStream_t stream, int64_t planes, int h, int w, int ho,
                   int wo, int kernel, int stride, int padding, int mode,
                   const float* x, float* y);
// Bilinear resize (PyTorch align_corners=False) of planes h x w -> ho x wo.
void ResizeBilinearForward(cudaStream_t stream, int64_t planes, int64_t h,
                           int64_t w, int64_t ho, int64_t wo, const float* x,
                           float* y);

void SoftmaxForward(cudaStream_t stream, int64_t rows, int64_t cols,
                    const float* x, float* y);
void SoftmaxBackward(cudaStream_t stream, int64_t rows, int64_t cols,
                     const float* y, const float* dy, float* dx);

void GatherRows(cudaStream_t stream, int64_t count, int64_t d,
                const float* table, const int* ids, float* y);
void ScatterAddRows(cudaStream_t stream, int64_t count, int64_t d,
                    const float* dy, const int* ids, float* dtable);
void RowDot(cudaStream_t stream, int64_t rows, int64_t f, const float* a,
            const float* b, float* out);

void Adam(cudaStream_t stream, int64_t n, float step_size, float bc2_sqrt,
          float beta1, float beta2, float eps, const float* grad, float* param,
          float* m, float* v);
void Ema(cudaStream_t stream, int64_t n, float decay, const float* param,
         float* ema);

// out[0] = sum a[i] * b[i] in double (out must hold one double).
void Dot(cudaStream_t stream, int64_t n, const float* a, const float* b,
         double* out);
// Device-scalar steps (no host round trip); `dot` is a Dot result.
// v *= 1 / max(sqrt(dot), 1e-12).
void ScaleByInverseNorm(cudaStream_t stream, int64_t n, const double* dot,
                        float* v);
// sigma[0] = dot; w_sn = w / dot.
void SpectralNormWeight(cudaStream_t stream, int64_t n, const double* dot,
                        const float* w, float* sigma, float* w_sn);
// dw[i, j] = dw_sn[i, j] / sigma - (dot / sigma) u[i] v[j].
void SpectralNormBackward(cudaStream_t stream, int64_t rows, int64_t cols,
                          const double* dot, const float* sigma,
                          const float* dw_sn, const float* u, const float* v,
                          float* dw);
// y = alpha[0] * x + beta * y (beta == 0: y not read).
void AxpbyScalar(cudaStream_t stream, int64_t n, const float* alpha,
                 const float* x, float beta, float* y);
// out[0] += dot.
void AddDot(cudaStream_t stream, const double* dot, float* out);

// flag[0] = 1 if any element is not finite, else 0.
void AnyNonFinite(cudaStream_t stream, int64_t n, const float* x, int* flag);

// Element type of a converted convolution operand.
enum class ElementType { kFloat32, kBfloat16 };

// Canonical [rows, c, h, w] float32 -> channels-last [rows_padded, h, w,
// c_padded] of `type`; padded rows and channels are zero. Weights use the
// same routine (OIHW -> OHWI with rows = output channels).
void ToChannelsLast(cudaStream_t stream, int64_t rows, int64_t rows_padded,
                    int64_t c, int64_t c_padded, int64_t h, int64_t w,
                    const float* src, ElementType type, void* dst);
// The inverse for the first `rows` rows and `c` channels of a channels-last
// [>= rows, h, w, c_padded] tensor.
void FromChannelsLast(cudaStream_t stream, int64_t rows, int64_t c,
                      int64_t c_padded, int64_t h, int64_t w, const void* src,
                      ElementType type, float* dst);
// Same-layout element type conversions.
void FloatToBfloat16(cudaStream_t stream, int64_t n, const float* src,
                     void* dst);
void Bfloat16ToFloat(cudaStream_t stream, int64_t n, const void* src,
                     float* dst);

}  // namespace paragan::cuda

#endif  // PARAGAN_WORKER_ENGINE_CUDA_KERNELS_H_

#include "common/optim_kernels.h"

#include <omp.h>

#include <cmath>

namespace paragan {

void AdamUpdateHost(float lr, float beta1, float beta2, float eps, int64_t step,
                    const float* grad, float* param, float* m, float* v,
                    int64_t n) {
  const double bc1 = 1 - std::pow(double{beta1}, double(step));
  const double bc2 = 1 - std::pow(double{beta2}, double(step));
  const float step_size = static_cast<float>(lr / bc1);
  const float bc2_sqrt = static_cast<float>(std::sqrt(bc2));
#pragma omp parallel for simd if (n > 32768) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    m[i] = beta1 * m[i] + (1 - beta1) * grad[i];
    v[i] = beta2 * v[i] + (1 - beta2) * grad[i] * grad[i];
    // Same association as torch.optim.Adam (foreach=False).
    const float denom = std::sqrt(v[i]) / bc2_sqrt + eps;
    param[i] -= step_size * (m[i] / denom);
  }
}

void EmaUpdateHost(float decay, const float* param, float* ema, int64_t n) {
#pragma omp parallel for simd if (n > 32768) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    ema[i] = decay * ema[i] + (1 - decay) * param[i];
  }
}

bool AllFiniteHost(const float* values, int64_t n) {
  int ok = 1;
#pragma omp simd reduction(& : ok)
  for (int64_t i = 0; i < n; ++i) ok &= std::isfinite(values[i]);
  return ok != 0;
}

void SetKernelThreads(int threads) {
  omp_set_num_threads(threads > 0 ? threads : omp_get_num_procs());
}

}  // namespace paragan

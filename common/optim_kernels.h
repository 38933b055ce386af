#ifndef PARAGAN_COMMON_OPTIM_KERNELS_H_
#define PARAGAN_COMMON_OPTIM_KERNELS_H_

// The optimizer's kernels on host memory, shared by the parameter servers
// (which step their tables with them) and the CPU backend (which delegates to
// them), so both sides step bit for bit alike without the servers linking the
// engine.

#include <cstdint>

namespace paragan {

struct AdamConfig {
  float lr = 2e-4f;
  float beta1 = 0.5f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
};

// One step of torch.optim.Adam (no weight decay, foreach=False) over n
// elements; step is 1-based.
void AdamUpdateHost(float lr, float beta1, float beta2, float eps, int64_t step,
                    const float* grad, float* param, float* m, float* v,
                    int64_t n);
// ema = decay * ema + (1 - decay) * param.
void EmaUpdateHost(float decay, const float* param, float* ema, int64_t n);
// True when every element is finite.
bool AllFiniteHost(const float* values, int64_t n);
// OpenMP threads of the kernels above (and of anything else in the process
// that uses OpenMP's default team size); <= 0: one per processor.
void SetKernelThreads(int threads);

}  // namespace paragan

#endif  // PARAGAN_COMMON_OPTIM_KERNELS_H_

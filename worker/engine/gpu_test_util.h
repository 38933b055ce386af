#ifndef PARAGAN_WORKER_ENGINE_GPU_TEST_UTIL_H_
#define PARAGAN_WORKER_ENGINE_GPU_TEST_UTIL_H_

// For GPU tests: they run where a CUDA GPU is present and skip, saying why,
// everywhere else (CI builds them with --config=cuda on machines without one).

#include <cuda_runtime_api.h>

namespace paragan {

inline bool HaveGpu() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error
    return false;
  }
  return count > 0;
}

}  // namespace paragan

#define PARAGAN_SKIP_WITHOUT_GPU()                                      \
  if (!::paragan::HaveGpu()) {                                          \
    GTEST_SKIP() << "no CUDA GPU on this machine: this test runs only " \
                    "where one is present";                             \
  }

#endif  // PARAGAN_WORKER_ENGINE_GPU_TEST_UTIL_H_

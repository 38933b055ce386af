#include "common/malloc_tuning.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace paragan {

bool KeepLargeAllocationsInHeap() {
#if defined(__GLIBC__)
  // 32 MiB is glibc's largest mmap threshold on 64-bit hosts; setting it
  // also turns off the threshold's dynamic adjustment.
  const bool mmap_ok = mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1;
  // Return memory at the top of the heap to the system only beyond 1 GiB.
  const bool trim_ok = mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1;
  return mmap_ok && trim_ok;
#else
  return true;
#endif
}

}  // namespace paragan

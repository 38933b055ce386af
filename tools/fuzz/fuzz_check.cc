#include <cstdio>
#include <cstdlib>

#include "tools/fuzz/fuzz_target.h"

namespace paragan {

void FuzzCheck(bool condition, const char* what) {
  if (condition) return;
  std::fprintf(stderr, "fuzz invariant violated: %s\n", what);
  std::abort();
}

}  // namespace paragan
